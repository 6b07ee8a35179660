"""Writing a report: the format follows the file's suffix (.html, .md, .json, .pdf), every
file is written atomically (core/atomic.py), and any failure is one ``ReportError`` that
names the file and the reason, with no partial file left behind."""

from __future__ import annotations

import os
from pathlib import Path

from cardfit.core.atomic import atomic_write_text
from cardfit.core.errors import ReportError

__all__ = ["FORMATS", "PAGE_SIZES", "format_for", "render_text", "write_report"]

FORMATS = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown",
           ".json": "json", ".pdf": "pdf"}
PAGE_SIZES = ("A4", "Letter")


def format_for(path: str | os.PathLike) -> str:
    """The format a file name asks for; ``ReportError`` for any other suffix."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        what = f"suffix '{suffix}'" if suffix else "no suffix"
        raise ReportError(f"cannot write {path}: {what} is not a report format "
                          "(use .html, .pdf, .md or .json)") from None


def render_text(report, fmt: str) -> str:
    """The report as HTML, Markdown or JSON text."""
    if fmt == "html":
        from cardfit.core.report.html import render_html

        return render_html(report)
    if fmt == "markdown":
        from cardfit.core.report.markdown import render_markdown

        return render_markdown(report)
    if fmt == "json":
        return report.dumps() + "\n"
    raise ReportError(f"'{fmt}' is not a text report format")


def write_report(report, path: str | os.PathLike, page_size: str = "A4") -> Path:
    """Write ``report`` to ``path`` in the format its suffix names. ``page_size`` (A4 or
    Letter) applies to PDF. Returns the path written."""
    p = Path(path)
    fmt = format_for(p)
    if page_size not in PAGE_SIZES:
        raise ReportError(f"page size '{page_size}' is not one of {', '.join(PAGE_SIZES)}")
    if fmt == "pdf":
        try:
            from cardfit.gui.report_pdf import write_pdf
        except ImportError as exc:  # a build without Qt
            raise ReportError(f"cannot write {p}: PDF needs Qt (PySide6): {exc}") from None
        write_pdf(report, p, page_size)
        return p
    atomic_write_text(p, render_text(report, fmt))
    return p
