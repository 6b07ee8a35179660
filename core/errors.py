"""Errors a user can meet, each naming what is wrong. The CLI prints them on one line
(and as an ``error`` object with ``--json``); the GUI shows them in the window."""

from __future__ import annotations


class CardfitError(Exception):
    """Base of every error cardfit reports to a user instead of a traceback."""

    kind = "error"

    def to_json(self) -> dict:
        return {"type": self.kind, "message": str(self)}


class UsageError(CardfitError):
    """An option or value the user gave is not valid."""

    kind = "usage"


class ModelSpecError(CardfitError):
    """A model file or id could not be read into a model spec.

    ``source`` names the file or id, ``field`` the offending field when there is one.
    """

    kind = "model"

    def __init__(self, message: str, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        where = ""
        if source:
            where = f"{source}: "
        if field:
            where += f"field '{field}': "
        super().__init__(where + message)

    def to_json(self) -> dict:
        d = super().to_json()
        d.update(source=self.source, field=self.field)
        return d


class HardwareError(CardfitError):
    """Hardware could not be probed (no driver, NVML missing, a GPU lost...)."""

    kind = "hardware"


class FitTestError(CardfitError):
    """The fit test could not be started or its child failed to report."""

    kind = "fittest"


class ReportError(CardfitError):
    """A report could not be written or read back."""

    kind = "report"
