"""gui/report_pdf.py: a paginated PDF on A4 and Letter, checked by rendering its pages to
PNG with poppler's pdftoppm (packaging/system-deps.sh installs poppler-utils)."""

from __future__ import annotations

import shutil
import subprocess
import unicodedata

import pytest

from cardfit.core.errors import ReportError
from cardfit.core.report.render import write_report
from report_support import HOSTILE, report

PDFTOPPM = shutil.which("pdftoppm")
needs_poppler = pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm (poppler-utils) is not installed; "
                                   "run packaging/system-deps.sh")
# Page sizes in points (1/72 in): ISO 216 A4 is 210 x 297 mm, US Letter 8.5 x 11 in.
SIZES = {"A4": (595, 842), "Letter": (612, 792)}


def _pages(pdf, folder):
    """Each page as PNG at 72 dpi (1 px = 1 pt), in order."""
    subprocess.run([PDFTOPPM, "-r", "72", "-png", str(pdf), str(folder / "page")], check=True,
                   capture_output=True, timeout=60)
    return sorted(folder.glob("page-*.png"), key=lambda p: int(p.stem.split("-")[-1]))


def _ink(png) -> float:
    """The share of pixels that are not white."""
    from PySide6.QtGui import QImage

    img = QImage(str(png)).convertToFormat(QImage.Format.Format_RGB32).scaled(150, 200)
    dark = sum(1 for y in range(img.height()) for x in range(img.width())
               if img.pixelColor(x, y).lightness() < 235)
    return dark / (img.width() * img.height())


@needs_poppler
@pytest.mark.parametrize("page_size", ["A4", "Letter"])
def test_pdf_pages(qapp, tmp_path, page_size):
    pdf = write_report(report(), tmp_path / "r.pdf", page_size)
    assert pdf.read_bytes().startswith(b"%PDF-")
    out = tmp_path / "png"
    out.mkdir()
    pages = _pages(pdf, out)
    assert len(pages) >= 3  # machine, model, breakdown, plans, fit test: more than one page
    from PySide6.QtGui import QImage

    w, h = SIZES[page_size]
    for p in pages:
        img = QImage(str(p))
        assert abs(img.width() - w) <= 1 and abs(img.height() - h) <= 1, (p.name, img.size())
    assert _ink(pages[0]) > 0.02  # the first page has text and tables on it
    assert _ink(pages[-1]) > 0.002


@needs_poppler
def test_pdf_text_holds_the_report(qapp, tmp_path):
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    r = report(hostile=True)
    pdf = write_report(r, tmp_path / "r.pdf")
    text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], check=True, capture_output=True,
                          timeout=60).stdout.decode("utf-8", "replace")
    # Without ligatures (fi) and line breaks, which pdftotext gives back as it finds them.
    flat = "".join(unicodedata.normalize("NFKC", text).split())
    for s in ("cardfit report", "Machine", "Fit test", "Assumptions", "NVIDIA H100 80GB HBM3",
              "15.91 GiB", "-0.7 %", HOSTILE):
        assert "".join(s.split()) in flat, s


def test_pdf_failure_leaves_no_file(qapp, tmp_path, monkeypatch):
    from cardfit.gui import report_pdf

    class Broken:
        def print_(self, writer):
            raise RuntimeError("printer on fire")

    p = tmp_path / "r.pdf"
    p.write_bytes(b"old")
    monkeypatch.setattr(report_pdf, "build_document", lambda report: Broken())
    with pytest.raises(ReportError, match="printer on fire"):
        write_report(report(), p)
    assert p.read_bytes() == b"old" and [x.name for x in tmp_path.iterdir()] == ["r.pdf"]

    class Silent:
        def print_(self, writer):
            pass  # QPdfWriter could not open the file: nothing comes out

    monkeypatch.setattr(report_pdf, "build_document", lambda report: Silent())
    with pytest.raises(ReportError, match="nothing was written"):
        write_report(report(), tmp_path / "new.pdf")
    assert [x.name for x in tmp_path.iterdir()] == ["r.pdf"]


def test_pdf_into_missing_folder(qapp, tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        write_report(report(), tmp_path / "no" / "r.pdf")


def test_svg_to_image_draws_the_chart(qapp):
    from cardfit.core.report.html import charts
    from cardfit.gui.report_pdf import svg_to_image

    imgs = {k: svg_to_image(v, 1) for k, v in charts(report()).items()}
    assert set(imgs) == {"breakdown", "memory_curve"}
    for img in imgs.values():
        colored = sum(1 for y in range(0, img.height(), 4) for x in range(0, img.width(), 4)
                      if img.pixelColor(x, y).saturation() > 80)
        assert colored > 20
