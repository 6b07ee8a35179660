"""The report as a paginated PDF (A4 or Letter), and as the QTextDocument the GUI's report
view shows: the HTML of core/report/html.py in its Qt subset, with each SVG chart drawn to
an image by QSvgRenderer (QTextDocument does not draw inline SVG).

Works without a window system: from the CLI, when no Qt application exists yet, one
QGuiApplication is made on the "offscreen" platform (Qt docs, "Qt for Embedded Linux":
QT_QPA_PLATFORM=offscreen renders without a display).
"""

from __future__ import annotations

import os
from pathlib import Path

from cardfit.core.atomic import atomic_path
from cardfit.core.errors import ReportError

__all__ = ["ensure_gui_app", "svg_to_image", "build_document", "write_pdf", "page_ids"]

# Chart width on the page in CSS pixels (QTextDocument lays out at 96 per inch): A4's
# 210 mm less 2 x 15 mm margins is 680 px, Letter's 8.5 in less margins 703 px.
CHART_WIDTH = 640
_SCALE = 2  # chart images are drawn at 2x: about 190 dpi on paper
_MARGIN_MM = 15.0
_QT_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; font-size: 10pt; color: #222222; }
h1 { font-size: 17pt; } h2 { font-size: 13pt; margin-top: 14px; } h3 { font-size: 11pt; }
th { background-color: #f2f2f2; font-weight: bold; text-align: left; white-space: nowrap; }
table { border-collapse: collapse; border-color: #bbbbbb; }
td, th { padding: 3px; border-width: 1px; border-style: solid; border-color: #bbbbbb; }
"""
_app = None  # the QGuiApplication made here, kept alive for the process


def page_ids() -> dict:
    from PySide6.QtGui import QPageSize

    return {"A4": QPageSize.PageSizeId.A4, "Letter": QPageSize.PageSizeId.Letter}


def ensure_gui_app():
    """The running Qt application, or a new offscreen QGuiApplication when there is none."""
    global _app
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance()
    if app is not None:
        return app
    old = os.environ.get("QT_QPA_PLATFORM")
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:
        _app = QGuiApplication(["cardfit"])
    finally:
        if old is None:
            os.environ.pop("QT_QPA_PLATFORM", None)
        else:
            os.environ["QT_QPA_PLATFORM"] = old
    return _app


def svg_to_image(svg: str, scale: float = _SCALE):
    """A QImage of the SVG text at ``scale`` times its size, on white."""
    from PySide6.QtCore import QByteArray, QRectF
    from PySide6.QtGui import QColor, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    ensure_gui_app()  # text needs QFontDatabase, which needs an application
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    if not renderer.isValid():
        raise ReportError("a report chart could not be drawn (invalid SVG)")
    size = renderer.defaultSize()
    img = QImage(int(size.width() * scale), int(size.height() * scale), QImage.Format.Format_RGB32)
    img.fill(QColor("white"))
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setRenderHint(QPainter.RenderHint.TextAntialiasing)
    renderer.render(p, QRectF(0, 0, img.width(), img.height()))
    p.end()
    return img


def build_document(report, chart_width: int = CHART_WIDTH):
    """The report as a QTextDocument (charts as image resources)."""
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QTextDocument

    from cardfit.core.report.html import render_html

    ensure_gui_app()
    doc = QTextDocument()
    doc.setDefaultStyleSheet(_QT_CSS)

    def chart(name: str, svg: str) -> str:
        img = svg_to_image(svg)
        url = f"cardfit-chart:{name}"
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(url), img)
        h = round(img.height() / img.width() * chart_width)
        return f'<img src="{url}" width="{chart_width}" height="{h}"/>'

    doc.setHtml(render_html(report, chart=chart, qt=True))
    doc.setMetaInformation(QTextDocument.MetaInformation.DocumentTitle, report.title)
    return doc


def write_pdf(report, path: str | os.PathLike, page_size: str = "A4") -> Path:
    """Write ``report`` as a PDF of ``page_size`` pages ("A4" or "Letter"), atomically."""
    ids = page_ids()
    if page_size not in ids:
        raise ReportError(f"page size '{page_size}' is not one of {', '.join(ids)}")
    from PySide6.QtCore import QMarginsF
    from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter

    doc = build_document(report)
    target = Path(path)
    with atomic_path(target) as tmp:
        writer = QPdfWriter(str(tmp))
        writer.setPageSize(QPageSize(ids[page_size]))
        writer.setPageMargins(QMarginsF(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM, _MARGIN_MM),
                              QPageLayout.Unit.Millimeter)
        writer.setResolution(300)
        writer.setTitle(report.title)
        writer.setCreator("cardfit")
        # QTextDocument.print_ paginates, and numbers the pages, itself.
        doc.print_(writer)
        del writer  # the PDF is complete once the writer is gone
    return target
