"""HTML, Markdown and JSON reports: content, self-containment, escaping, atomic writing."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from cardfit.core.errors import ReportError
from cardfit.core.report.html import render_html
from cardfit.core.report.markdown import md, render_markdown
from cardfit.core.report.model import load_report
from cardfit.core.report.render import format_for, write_report
from cardfit.core.report.svg import memory_curve_svg, nice_ticks, stacked_bar_svg
from report_support import HOSTILE, report


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


def test_html_has_every_section_and_figure():
    r = report()
    html = render_html(r)
    text = " ".join(_parse(html).text)
    for heading in ("Summary", "Machine", "Model", "Workload and predicted memory", "Verdict per card",
                    "Best plans", "Fit test", "Assumptions"):
        assert f"<h2>{heading}</h2>" in html
    for s in ("NVIDIA H100 80GB HBM3", "580.159.04", "13.0", "79.18 GiB", "125.87 GiB", "Ubuntu 24.04.3",
              "Llama 3.1 8B", "8.03 B", "LlamaForCausalLM", r.prediction.label, "GeForce RTX 4090",
              r.cards[0].sentence, "largest batch", "15.91 GiB", "-0.7 %", "Weights", "KV cache",
              r.assumptions[0], r.cardfit_version):
        assert s in text, s
    tags = [t for t, _ in _parse(html).tags]
    assert tags.count("svg") == 2 and "polyline" in tags and tags.count("rect") > 5


def test_html_is_self_contained():
    html = render_html(report())
    tags = _parse(html).tags
    for tag, attrs in tags:
        for name in ("src", "href", "xlink:href", "action", "data", "poster"):
            v = (attrs.get(name) or "").strip().lower()
            assert not re.match(r"^(https?:)?//", v), (tag, name, v)
        assert tag not in ("script", "link", "iframe", "object", "embed", "img")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "@import" not in html and "url(" not in html


def test_html_escapes_hostile_strings():
    html = render_html(report(hostile=True))
    p = _parse(html)
    assert [t for t, _ in p.tags if t in ("script", "img", "a", "iframe")] == []
    assert not any(k.startswith("on") for _, attrs in p.tags for k in attrs)
    assert "<script" not in html and "javascript:" not in "".join(str(a) for _, a in p.tags)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # The hostile name comes back verbatim as text (title, heading, tables, the chart label).
    assert HOSTILE in "".join(p.text)


def _cells(line: str) -> int:
    """Unescaped pipes in a Markdown table line."""
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_content_and_tables():
    r = report()
    text = render_markdown(r)
    for s in ("# cardfit report: Llama 3.1 8B",
              "## Machine", "## Fit test", "NVIDIA H100 80GB HBM3", "15.91 GiB", "```text", "Weights"):
        assert s in text, s
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---") or line.startswith("|--"):
            cols = _cells(line)
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert _cells(lines[j]) == cols, lines[j]
                j += 1
    assert text.count("```") % 2 == 0


def test_markdown_escapes_hostile_strings():
    text = render_markdown(report(hostile=True))
    # No unescaped "<" (raw HTML) and no unescaped "](" (a link) anywhere.
    assert not re.search(r"(?<!\\)<", text)
    assert not re.search(r"(?<!\\)\]\(", text)
    assert "\\<script\\>" in text
    # Every backtick outside our own fences is escaped.
    outside = re.sub(r"```text\n.*?```", "", text, flags=re.S)
    assert not re.search(r"(?<!\\)`", outside)
    for line in text.splitlines():
        if line.startswith("|") and "script" in line:
            assert _cells(line) == 3  # the hostile pipe did not open a cell
    assert md("- x", start=True) == "\\- x" and md("1. x", start=True) == "1\\. x"
    assert md("a\nb") == "a b"


def test_json_round_trip_through_a_file(tmp_path):
    r = report(hostile=True)
    p = write_report(r, tmp_path / "r.json")
    assert load_report(p) == r


@pytest.mark.parametrize("name, fmt", [("a.html", "html"), ("A.HTM", "html"), ("a.md", "markdown"),
                                       ("a.json", "json"), ("a.pdf", "pdf")])
def test_format_from_suffix(name, fmt):
    assert format_for(name) == fmt


@pytest.mark.parametrize("name", ["a.txt", "a", "a.html.bak", "a.docx"])
def test_unknown_suffix_is_refused_and_writes_nothing(tmp_path, name):
    with pytest.raises(ReportError, match="not a report format"):
        write_report(report(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_each_text_format_written(tmp_path):
    r = report()
    for suffix in (".html", ".md", ".json"):
        p = write_report(r, tmp_path / f"r{suffix}")
        assert r.model.name in p.read_text(encoding="utf-8")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.html", "r.json", "r.md"]


@pytest.mark.parametrize("suffix", [".html", ".md", ".json"])
def test_failed_write_leaves_old_file_and_no_partial(tmp_path, monkeypatch, suffix):
    from cardfit.core import atomic

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    p = tmp_path / f"r{suffix}"
    p.write_text("old report")
    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(ReportError, match=r"cannot write .*r\.\w+: No space left on device"):
        write_report(report(), p)
    assert p.read_text() == "old report" and [x.name for x in tmp_path.iterdir()] == [p.name]


def test_bad_page_size():
    with pytest.raises(ReportError, match="page size"):
        write_report(report(), "x.pdf", page_size="A3")


def test_charts_standalone_svg():
    r = report()
    bar = stacked_bar_svg(r.prediction.components, r.prediction.total_bytes, 24 * 1024**3, "RTX 4090")
    assert bar.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in bar
    assert bar.count("<rect") == 1 + 2 * len([c for c in r.prediction.components if c.bytes > 0])
    curve = memory_curve_svg(r.fit_test.samples, r.fit_test.predicted_bytes, r.fit_test.available_bytes,
                             r.fit_test.phases)
    pts = re.search(r'points="([^"]+)"', curve).group(1).split()
    assert len(pts) == len(r.fit_test.samples)
    assert "no samples recorded" in memory_curve_svg([], None, None)
    assert nice_ticks(15.9) == [0, 5, 10, 15, 20] and nice_ticks(79.2)[-1] >= 79.2
