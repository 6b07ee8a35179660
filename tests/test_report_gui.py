"""gui/report_view.py and gui/report_dialog.py: a report reopened from JSON shows the same
content; File -> Export report... writes the format its filter names."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardfit.core.report.model import Report
from cardfit.core.report.render import write_report
from cardfit.gui import report_view
from cardfit.gui.report_dialog import FILTERS, export_report_dialog, path_for_filter
from cardfit.gui.report_view import ReportView, open_report_dialog
from report_support import HOSTILE, report


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_view_shows_report_reopened_from_json(qtbot, tmp_path):
    r = report(hostile=True)
    path = write_report(r, tmp_path / "r.json")
    view = ReportView.open_file(path)
    qtbot.addWidget(view)
    assert view.report == r
    text = _flat(view.text())
    for s in (HOSTILE, "Machine", "NVIDIA H100 80GB HBM3", "Fit test", "15.91 GiB", r.cards[1].sentence,
              "Assumptions", r.assumptions[0]):
        assert _flat(s) in text, s
    assert "Report - " in view.windowTitle()
    # The charts are images in the document.
    doc = view.browser.document()
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QTextDocument

    for name in ("breakdown", "memory_curve"):
        img = doc.resource(QTextDocument.ResourceType.ImageResource, QUrl(f"cardfit-chart:{name}"))
        assert img is not None and not img.isNull()


def test_view_accepts_parent_first(qtbot):
    from PySide6.QtWidgets import QWidget

    parent = QWidget()
    qtbot.addWidget(parent)
    r = report(with_test=False)
    view = ReportView(parent, r)
    assert view.report is r and view.parent() is parent
    with pytest.raises(TypeError):
        ReportView(parent)


def test_open_report_dialog_bad_file_shows_message(qtbot, tmp_path, monkeypatch):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": "cardfit.detect/1"}')
    shown = []
    monkeypatch.setattr(report_view.QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    monkeypatch.setattr(report_view.QMessageBox, "warning", lambda parent, title, text: shown.append(text))
    assert open_report_dialog(None) is None
    assert "not a cardfit report" in shown[0] and "x.json" in shown[0]

    good = tmp_path / "r.json"
    write_report(report(with_test=False), good)
    monkeypatch.setattr(report_view.QFileDialog, "getOpenFileName", lambda *a, **k: (str(good), ""))
    view = open_report_dialog(None)
    qtbot.addWidget(view)
    assert isinstance(view, ReportView) and view.isVisible()


@pytest.mark.parametrize("filt, suffix", FILTERS)
def test_export_dialog_writes_the_filtered_format(qtbot, tmp_path, monkeypatch, filt, suffix):
    from PySide6.QtWidgets import QFileDialog

    r = report()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "out"), filt))
    path = export_report_dialog(None, r)
    assert path == str(tmp_path / f"out{suffix}")
    data = Path(path).read_bytes()
    assert data[:5] == b"%PDF-" if suffix == ".pdf" else r.model.name.encode() in data
    if suffix == ".json":
        assert Report.from_json(data.decode()) == r


def test_export_dialog_error_and_cancel(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text: shown.append(text))
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "gone" / "r.html"), FILTERS[0][0]))
    assert export_report_dialog(None, report()) is None
    assert "does not exist" in shown[0] and not (tmp_path / "gone").exists()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))
    assert export_report_dialog(None, report()) is None and len(shown) == 1


def test_view_export_button(qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFileDialog

    view = ReportView(report(with_test=False))
    qtbot.addWidget(view)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "v.md"), ""))
    qtbot.mouseClick(view.export_button, Qt.MouseButton.LeftButton)
    assert "cardfit report" in (tmp_path / "v.md").read_text()


def test_path_for_filter():
    assert path_for_filter("/x/r", FILTERS[1][0]) == "/x/r.pdf"
    assert path_for_filter("/x/r.md", FILTERS[1][0]) == "/x/r.md"
    assert path_for_filter("/x/r.v2", FILTERS[3][0]) == "/x/r.v2.json"
