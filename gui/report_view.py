"""A window that shows a report: one just built, or one reopened from its JSON file
(File -> Open report...). It shows the same document the PDF prints (gui/report_pdf.py)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QMessageBox, QPushButton,
                               QTextBrowser, QVBoxLayout, QWidget)

from cardfit.core.errors import CardfitError
from cardfit.core.report.model import Report, load_report

__all__ = ["ReportView", "open_report_dialog"]


class ReportView(QDialog):
    """``ReportView(report, parent=None)``; ``ReportView(parent, report)`` works too."""

    def __init__(self, report=None, parent: QWidget | None = None):
        if isinstance(report, QWidget) and (parent is None or isinstance(parent, Report)):
            report, parent = parent, report
        super().__init__(parent)
        if not isinstance(report, Report):
            raise TypeError("ReportView needs a Report (cardfit.core.report.model)")
        from cardfit.gui.report_pdf import build_document

        self.report = report
        self.setWindowTitle(f"Report - {report.title}")
        self.resize(900, 760)
        self.browser = QTextBrowser(self)
        self.browser.setOpenLinks(False)  # a report holds no links to follow
        self._doc = build_document(report)
        self._doc.setParent(self.browser)
        self.browser.setDocument(self._doc)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.export_button = QPushButton("Export...", self)
        buttons.addButton(self.export_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.export_button.clicked.connect(self.export)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)

    def text(self) -> str:
        """What the view shows, as plain text (for tests and copy)."""
        return self.browser.toPlainText()

    def export(self) -> str | None:
        from cardfit.gui.report_dialog import export_report_dialog

        return export_report_dialog(self, self.report)

    @classmethod
    def open_file(cls, path: str | Path, parent: QWidget | None = None) -> "ReportView":
        """A view of the report JSON at ``path``; ``ReportError`` when it is not one."""
        return cls(load_report(path), parent)


def open_report_dialog(parent: QWidget | None = None, start_dir: str | None = None) -> ReportView | None:
    """File -> Open report...: pick a report JSON and show it (non-modal). None when
    cancelled or unreadable (the reason is shown in a message box)."""
    path, _ = QFileDialog.getOpenFileName(parent, "Open report", start_dir or str(Path.home()),
                                          "cardfit report (*.json);;All files (*)")
    if not path:
        return None
    try:
        view = ReportView.open_file(path, parent)
    except CardfitError as exc:
        QMessageBox.warning(parent, "Open report", f"This file cannot be shown as a report.\n\n{exc}")
        return None
    view.show()
    return view
