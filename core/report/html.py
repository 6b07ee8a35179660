"""The report as one self-contained HTML page: inline CSS, charts as inline SVG, nothing
fetched from anywhere. Every string that comes from the model, the machine or a file goes
through ``html.escape`` (quote=True), so a hostile model name stays text.

``render_html(report, chart=...)`` lets the Qt renderer (gui/report_pdf.py) put its own
``<img>`` in place of each chart, since QTextDocument does not draw inline SVG; with
``qt=True`` the markup keeps to the HTML subset QTextDocument supports (no CSS classes on
nested elements, tables with border attributes).
"""

from __future__ import annotations

from html import escape
from typing import Callable

from cardfit.core.report import fmt
from cardfit.core.report.svg import memory_curve_svg, stacked_bar_svg

__all__ = ["render_html", "charts"]


def e(v: object) -> str:
    """Escaped, on one line; None as '-'."""
    return "-" if v is None else escape(" ".join(str(v).split()), quote=True)


_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; color: #222; margin: 2em auto;
       max-width: 60em; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.6em;
  border-bottom: 1px solid #ccc; padding-bottom: 0.2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { border: 1px solid #ccc;
  padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta { color: #666; } .note { background: #fff4e5; border-left: 4px solid #e69f00; padding: 0.4em 0.8em; }
.fits { color: #006b3c; font-weight: bold; } .tight { color: #a06000; font-weight: bold; }
.no { color: #b00000; font-weight: bold; } .small { font-size: 0.85em; color: #555; }
.chart { margin: 0.8em 0; } svg { max-width: 100%; height: auto; }
"""


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    return f'<table border="1" cellspacing="0" cellpadding="4">{body}</table>'


def _grid(head: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    """A table; each cell (text, numeric)."""
    h = "".join(f"<th>{e(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f'<td class="num" align="right">{e(t)}</td>' if n else f"<td>{e(t)}</td>"
                                    for t, n in row) + "</tr>" for row in rows)
    return f'<table border="1" cellspacing="0" cellpadding="4"><tr>{h}</tr>{body}</table>'


def _status(status: str, word: str | None = None) -> str:
    cls = {"fits": "fits", "tight": "tight", "no": "no", "oom": "no"}.get(status, "")
    color = {"fits": "#006b3c", "tight": "#a06000", "no": "#b00000", "oom": "#b00000"}.get(status, "#222222")
    return (f'<span class="{cls}" style="color:{color}; font-weight:bold">'
            f"{e(word or fmt.status_word(status))}</span>")


def charts(report) -> dict[str, str]:
    """The report's charts as SVG text, by name."""
    p = report.prediction
    available = report.cards[0].available_bytes if len(report.cards) == 1 else None
    label = f"{report.cards[0].name} available" if available else "available"
    out = {"breakdown": stacked_bar_svg(p.components, p.total_bytes, available, label)}
    f = report.fit_test
    if f is not None:
        out["memory_curve"] = memory_curve_svg(f.samples, f.predicted_bytes, f.available_bytes, f.phases)
    return out


def _inline_chart(name: str, svg: str) -> str:
    return svg


def render_html(report, chart: Callable[[str, str], str] | None = None, qt: bool = False) -> str:
    chart = chart or _inline_chart
    svgs = charts(report)
    m, md, p = report.machine, report.model, report.prediction
    out: list[str] = []
    out.append(f"<h1>cardfit report: {e(md.name)}</h1>")
    out.append(f'<p class="meta" style="color:#666666">{e(p.label)}<br/>Made {e(report.created)} '
               f"by cardfit {e(report.cardfit_version)}</p>")
    for n in report.notes:
        out.append(f'<p class="note" style="background-color:#fff4e5">Note: {e(n)}</p>')

    # Summary first: what a reader wants.
    out.append("<h2>Summary</h2><ul>")
    out.append(f"<li>Predicted peak device memory per GPU: <b>{e(fmt.size(p.total_bytes))}</b> "
               f"(at {e(p.peak_stage)}); host RAM {e(fmt.size(p.ram_bytes))}.</li>")
    for c in report.cards:
        out.append(f"<li>{e(c.name)}: {_status(c.status)} - {e(fmt.card_headline(c))}. "
                   f"Plans: {e(c.sentence)}.</li>")
    f = report.fit_test
    if f is not None:
        out.append(f"<li>Fit test on {e(f.gpu_name)}: {_status(f.status, fmt.fit_word(f.status))}, "
                   f"measured {e(fmt.size(f.peak_device_bytes))} vs predicted {e(fmt.size(f.predicted_bytes))} "
                   f"(error {e(fmt.pct(f.error_pct))}).</li>")
    out.append("</ul>")

    out.append("<h2>Machine</h2>")
    if m is None:
        out.append("<p>Not recorded.</p>")
    else:
        if m.gpus:
            rows = [[(str(g.index), True), (fmt.text(g.name), False), (fmt.size(g.memory_total_bytes), True),
                     (fmt.size(g.memory_free_bytes), True), (fmt.text(g.driver_version), False),
                     (fmt.text(g.cuda_driver_version), False), (fmt.text(g.compute_capability), False),
                     (fmt.text(g.error) if g.error else "ok", False)] for g in m.gpus]
            out.append(_grid(["GPU", "Name", "Memory", "Free", "Driver", "CUDA", "Compute cap.", "State"], rows))
        else:
            out.append("<p>No NVIDIA GPU detected.</p>")
        out.append(_table(fmt.machine_rows(m)))

    out.append("<h2>Model</h2>")
    out.append(_table(fmt.model_rows(md)))
    if md.notes:
        out.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in md.notes) + "</ul>")

    out.append("<h2>Workload and predicted memory</h2>")
    out.append(f"<p><b>{e(p.label)}</b>; the peak falls in the {e(p.peak_stage)} stage "
               f"(estimate confidence: {e(p.confidence)}).</p>")
    out.append(f'<div class="chart">{chart("breakdown", svgs["breakdown"])}</div>')
    rows = [[(c.label, False), (fmt.gib(c.bytes), True), (c.formula, False), (c.source, False)]
            for c in p.components]
    rows.append([("Total per GPU", False), (fmt.gib(p.total_bytes), True), ("", False), ("", False)])
    out.append(_grid(["Component", "GiB", "Formula", "Source"], rows))
    out.append("<h3>Host RAM</h3>")
    rows = [[(c.label, False), (fmt.gib(c.bytes), True), (c.formula, False), (c.source, False)]
            for c in p.ram_components]
    rows.append([("Total", False), (fmt.gib(p.ram_bytes), True), ("", False), ("", False)])
    out.append(_grid(["Component", "GiB", "Formula", "Source"], rows))
    out.append("<h3>Workload settings</h3>")
    out.append(_table(fmt.workload_rows(p.workload)))

    out.append("<h2>Verdict per card</h2>")
    if report.cards:
        rows = [[(c.name, False), (c.kind, False), (fmt.gib(c.available_bytes), True),
                 (fmt.gib(c.needed_bytes), True), (fmt.gib(c.headroom_bytes), True),
                 (fmt.status_word(c.status) + ("" if c.ram_fits else "; host RAM short"), False)]
                for c in report.cards]
        out.append(_grid(["Card", "Kind", "Available GiB", "Needed GiB", "Headroom GiB", "Verdict"], rows))
    else:
        out.append("<p>No card to judge against.</p>")

    if report.cards:
        out.append("<h2>Best plans</h2>")
    for c in report.cards:
        out.append(f"<h3>{e(c.name)} ({e(fmt.size(c.available_bytes))} available)</h3>")
        out.append(f"<p>{e(c.sentence)}</p>")
        rows = [[(pl.label, False), (fmt.gib(pl.total_bytes), True), (fmt.status_word(pl.status), False),
                 (fmt.headroom(pl.headroom_bytes), False), (pl.note, False)] for pl in c.plans]
        out.append(_grid(["Plan", "GiB", "Verdict", "Headroom", "Note"], rows))
        out.append(f"<p>{e(fmt.largest_line(c))}</p>")

    if f is not None:
        out.append("<h2>Fit test</h2>")
        out.append(_table(fmt.fit_rows(f)))
        out.append(f'<div class="chart">{chart("memory_curve", svgs["memory_curve"])}</div>')
        shown = len(f.samples)
        more = f" (thinned from {f.samples_total})" if f.samples_total > shown else ""
        out.append(f'<p class="small" style="color:#555555">Memory of the test process on the GPU '
                   f"(NVML used minus the baseline before it started), {shown} samples{e(more)}; "
                   f"dashed: the prediction and the memory available when the test began.</p>")

    out.append("<h2>Assumptions</h2><ul>")
    out.extend(f"<li>{e(a)}</li>" for a in report.assumptions)
    out.append("</ul>")
    out.append(f'<p class="small" style="color:#555555">Report schema {e(report.schema)}. '
               "Sizes are binary: 1 GiB = 1024<sup>3</sup> bytes.</p>")

    body = "\n".join(out)
    title = e(report.title)
    style = "" if qt else f"<style>{_CSS}</style>"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"/>'
            f"<title>cardfit report: {title}</title>{style}</head>\n<body>\n{body}\n</body></html>\n")
