"""File -> Export report...: a save dialog whose filter picks the format (HTML, PDF,
Markdown, JSON), then core/report/render.write_report. A failure is shown in a message box;
nothing partial is left on disk (writes are atomic)."""

from __future__ import annotations

from pathlib import Path

from cardfit.core.errors import CardfitError

__all__ = ["FILTERS", "export_report_dialog", "default_page_size", "path_for_filter"]

# (filter text, suffix): the order of the dialog's list.
FILTERS = [("HTML page (*.html)", ".html"), ("PDF document (*.pdf)", ".pdf"),
           ("Markdown (*.md)", ".md"), ("JSON, opens again in cardfit (*.json)", ".json")]
_KNOWN = {".html", ".htm", ".pdf", ".md", ".markdown", ".json"}


def default_page_size() -> str:
    """Letter where the locale measures in US units, else A4."""
    from PySide6.QtCore import QLocale

    return "Letter" if QLocale().measurementSystem() == QLocale.MeasurementSystem.ImperialUSSystem else "A4"


def path_for_filter(path: str, selected_filter: str) -> str:
    """A path with the chosen filter's suffix added when it has none of ours."""
    if Path(path).suffix.lower() in _KNOWN:
        return path
    suffix = next((s for f, s in FILTERS if f == selected_filter), ".html")
    return path + suffix


def _default_name(report) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in report.model.name).strip("-.")
    return f"cardfit-report-{safe or 'model'}.html"


def export_report_dialog(parent, report, start_dir: str | None = None) -> str | None:
    """Ask where to save ``report`` and write it; the path written, or None when the user
    cancelled or the write failed (the reason is shown in a message box)."""
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from cardfit.core.report.render import write_report

    start = str(Path(start_dir or Path.home()) / _default_name(report))
    path, selected = QFileDialog.getSaveFileName(parent, "Export report", start,
                                                 ";;".join(f for f, _ in FILTERS), FILTERS[0][0])
    if not path:
        return None
    path = path_for_filter(path, selected)
    try:
        write_report(report, path, default_page_size())
    except CardfitError as exc:
        QMessageBox.critical(parent, "Export report", f"The report was not saved.\n\n{exc}")
        return None
    return path
