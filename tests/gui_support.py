"""Fixtures for the GUI tests (imported by tests/test_gui_*.py): settings kept in a
temporary folder, and windows built on a recorded machine instead of a probe."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
H100_JSON = DATA / "detect_h100.json"


@pytest.fixture(autouse=True)
def gui_settings(tmp_path, monkeypatch):
    """Every GUI test gets empty settings of its own (never the user's)."""
    from cardfit.gui import settings as st

    folder = tmp_path / "settings"
    folder.mkdir()
    st.redirect(str(folder))
    monkeypatch.delenv("CARDFIT_FAKE_MACHINE", raising=False)
    yield folder


@pytest.fixture
def h100_machine():
    from cardfit.core.hardware.machine import MachineInfo

    return MachineInfo.from_json(H100_JSON.read_text())


@pytest.fixture
def make_window(qtbot, h100_machine):
    """``make_window(machine=None, **MainWindow kwargs)``: a shown window on ``machine``
    (the recorded H100 by default), waited for until populated."""
    from cardfit.gui.main_window import MainWindow

    def make(machine=None, wait=True, **kw):
        m = machine if machine is not None else h100_machine
        kw.setdefault("start_monitor", False)
        w = MainWindow(machine_source=lambda: m, **kw)
        qtbot.addWidget(w)
        if kw.get("restore") is False:
            w.resize(1300, 850)
        w.show()
        if wait:
            qtbot.waitUntil(w.is_populated, timeout=15000)
        return w

    return make


def cell_status(window, model_name: str, column_title: str) -> tuple[str | None, str]:
    """(status, text) of the table cell of a model (by name) and a column (by title)."""
    from cardfit.gui.model_table import FIXED_COLUMNS, STATUS_ROLE

    tm = window.table_model
    titles = [t for t, _ in tm.workloads()]
    col = len(FIXED_COLUMNS) + titles.index(column_title)
    for row, e in enumerate(tm.entries()):
        if e.name == model_name:
            idx = tm.index(row, col)
            return idx.data(STATUS_ROLE), idx.data()
    raise AssertionError(f"no row {model_name!r}")


def visible_names(window) -> list[str]:
    p = window.proxy
    return [p.index(r, 0).data() for r in range(p.rowCount())]
