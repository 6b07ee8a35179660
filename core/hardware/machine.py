"""``MachineInfo``: everything ``cardfit detect`` reports, and its stable JSON document
(schema "cardfit.detect/1", documented in README.md, "cardfit detect --json").

Sizes are always bytes. Reading is tolerant: unknown keys are ignored and missing ones
left None, so a report written by a newer cardfit still loads.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field

from cardfit import __version__
from cardfit.core.errors import ReportError
from cardfit.core.hardware import nvml
from cardfit.core.hardware.gpu import GpuInfo, probe_gpus, system_versions
from cardfit.core.hardware.host import HostInfo, probe_host

__all__ = ["SCHEMA", "MachineInfo", "probe_machine"]

SCHEMA = "cardfit.detect/1"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class MachineInfo:
    gpus: list[GpuInfo] = field(default_factory=list)
    host: HostInfo = field(default_factory=HostInfo)
    nvml_status: str = nvml.NvmlStatus.UNKNOWN.value
    nvml_message: str = ""
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    cardfit_version: str = __version__
    time: str = field(default_factory=_now)  # ISO 8601, UTC
    schema: str = SCHEMA

    @property
    def nvml_ok(self) -> bool:
        return self.nvml_status == nvml.NvmlStatus.OK.value

    def usable_gpus(self) -> list[GpuInfo]:
        return [g for g in self.gpus if g.ok]

    def to_json(self) -> dict:
        return {
            "schema": self.schema,
            "cardfit_version": self.cardfit_version,
            "time": self.time,
            "nvml": {"status": self.nvml_status, "message": self.nvml_message},
            "driver_version": self.driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "gpus": [g.to_json() for g in self.gpus],
            "host": self.host.to_json(),
        }

    def dumps(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_json(), indent=indent)

    @classmethod
    def from_json(cls, doc: dict | str) -> "MachineInfo":
        """Read a ``detect --json`` document (a dict or its text). ``ReportError`` when it is
        not one."""
        if isinstance(doc, (str, bytes)):
            try:
                doc = json.loads(doc)
            except ValueError as exc:
                raise ReportError(f"not a cardfit detect document: invalid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ReportError("not a cardfit detect document: the top level is not an object")
        schema = str(doc.get("schema", ""))
        if not schema.startswith("cardfit.detect/"):
            raise ReportError(f"not a cardfit detect document (schema {schema!r}, "
                              f"expected {SCHEMA!r})")
        nv = doc.get("nvml") or {}
        try:
            gpus = [GpuInfo.from_json(g) for g in doc.get("gpus") or []]
        except (TypeError, KeyError, ValueError) as exc:
            raise ReportError(f"detect document: a GPU entry is malformed ({exc})") from None
        driver, cuda = doc.get("driver_version"), doc.get("cuda_driver_version")
        for g in gpus:
            g.driver_version = g.driver_version or driver
            g.cuda_driver_version = g.cuda_driver_version or cuda
        return cls(gpus=gpus, host=HostInfo.from_json(doc.get("host") or {}),
                   nvml_status=str(nv.get("status", nvml.NvmlStatus.UNKNOWN.value)),
                   nvml_message=str(nv.get("message", "")), driver_version=driver,
                   cuda_driver_version=cuda,
                   cardfit_version=str(doc.get("cardfit_version", "")),
                   time=str(doc.get("time", "")), schema=schema)


def probe_machine() -> MachineInfo:
    """Probe NVML, every GPU and the host. Never raises: no GPU is a valid machine."""
    st = nvml.state()
    info = MachineInfo(host=probe_host(), nvml_status=st.status.value, nvml_message=st.message)
    if st.ok:
        try:
            info.driver_version, info.cuda_driver_version = system_versions()
        except nvml.NvmlError:
            pass
        info.gpus = probe_gpus()
    return info

