"""The report's two charts as standalone SVG text: the predicted breakdown as a stacked
bar, and a fit test's measured memory curve. Plain elements and presentation attributes
only (rect, line, polyline, text; no CSS, no scripts, no external references), so the same
text is inlined in the HTML report and rendered to PNG by Qt's QSvgRenderer (SVG Tiny 1.2)
for the PDF. Every label passes through ``esc``.
"""

from __future__ import annotations

import math
from html import escape
from typing import Iterable, Sequence

from cardfit.core.units import GiB

__all__ = ["stacked_bar_svg", "memory_curve_svg", "COLORS", "nice_ticks"]

# One color per breakdown key (core/estimate/result.py COMPONENT_ORDER); colorblind-safe
# hues first (Okabe & Ito 2008, "Color Universal Design"), then neutral greys.
COLORS = {
    "cuda_context": "#999999",
    "weights": "#0072B2",
    "quant_constants": "#56B4E9",
    "adapters": "#009E73",
    "gradients": "#E69F00",
    "optimizer": "#D55E00",
    "optimizer_temp": "#F0A875",
    "activations": "#CC79A7",
    "logits": "#F0E442",
    "kv_cache": "#6A3D9A",
    "temp_buffers": "#B8B8B8",
    "allocator_reserve": "#D9D9D9",
}
_FALLBACK = "#7F7F7F"
_FONT = 'font-family="DejaVu Sans, Arial, Helvetica, sans-serif"'


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def _gib(n: float) -> str:
    return f"{n / GiB:.2f}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values 0..>=top (1, 2, 2.5, 5 x 10^k steps; Heckbert 1990, "Nice numbers
    for graph labels", Graphics Gems)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def stacked_bar_svg(components: Sequence, total: int, available: int | None = None,
                    available_label: str = "available", width: int = 720) -> str:
    """A horizontal bar of the breakdown (``components``: objects with key, label, bytes),
    a marker at the card's available memory when given, and a legend."""
    parts = [c for c in components if c.bytes > 0]
    left, right, bar_y, bar_h = 10, 10, 28, 34
    span = width - left - right
    top = max(total, available or 0) * 1.05 or 1
    legend_rows = math.ceil(len(parts) / 2)
    height = bar_y + bar_h + 30 + 18 * legend_rows + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="Predicted memory breakdown">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{left}" y="18" font-size="13" {_FONT} fill="#222222">'
           f'Predicted peak per GPU: {_gib(total)} GiB</text>']
    x = float(left)
    for c in parts:
        w = c.bytes / top * span
        out.append(f'<rect x="{x:.2f}" y="{bar_y}" width="{max(w, 0.5):.2f}" height="{bar_h}" '
                   f'fill="{COLORS.get(c.key, _FALLBACK)}" stroke="#ffffff" stroke-width="0.5">'
                   f'<title>{esc(c.label)}: {_gib(c.bytes)} GiB</title></rect>')
        x += w
    if available:
        ax = left + available / top * span
        out.append(f'<line x1="{ax:.2f}" y1="{bar_y - 8}" x2="{ax:.2f}" y2="{bar_y + bar_h + 8}" '
                   f'stroke="#C00000" stroke-width="2" stroke-dasharray="4,3"/>')
        anchor = "end" if ax > width * 0.6 else "start"
        tx = ax - 4 if anchor == "end" else ax + 4
        out.append(f'<text x="{tx:.2f}" y="{bar_y + bar_h + 20}" font-size="11" {_FONT} fill="#C00000" '
                   f'text-anchor="{anchor}">{esc(available_label)}: {_gib(available)} GiB</text>')
    ly = bar_y + bar_h + 38
    col_w = span / 2
    for i, c in enumerate(parts):
        cx = left + (i % 2) * col_w
        cy = ly + (i // 2) * 18
        out.append(f'<rect x="{cx:.2f}" y="{cy - 10}" width="12" height="12" '
                   f'fill="{COLORS.get(c.key, _FALLBACK)}"/>')
        out.append(f'<text x="{cx + 18:.2f}" y="{cy}" font-size="11" {_FONT} fill="#222222">'
                   f'{esc(c.label)} ({_gib(c.bytes)} GiB)</text>')
    out.append("</svg>")
    return "\n".join(out)


def memory_curve_svg(samples: Iterable[dict], predicted: int | None = None, available: int | None = None,
                     phases: Sequence[dict] = (), width: int = 720, height: int = 320) -> str:
    """The process's own device memory over time (each sample's ``device_used``, bytes, at
    ``t`` seconds) as a polyline, with the prediction and the card's available memory as
    horizontal lines and the fit test's phases as faint vertical lines."""
    pts = []
    for s in samples:
        t, u = s.get("t"), s.get("device_used")
        if isinstance(t, (int, float)) and isinstance(u, (int, float)) and not isinstance(u, bool):
            if math.isfinite(t) and math.isfinite(u):
                pts.append((float(t), float(u)))
    left, right, top_m, bottom = 58, 16, 24, 40
    pw, ph = width - left - right, height - top_m - bottom
    t_max = max([p[0] for p in pts] + [1e-9])
    y_max = max([p[1] for p in pts] + [predicted or 0, available or 0, 1])
    yt = nice_ticks(y_max / GiB * 1.02)
    xt = nice_ticks(t_max)
    y_top, x_top = yt[-1] * GiB or 1, xt[-1] or 1

    def X(t: float) -> float:
        return left + t / x_top * pw

    def Y(b: float) -> float:
        return top_m + ph - b / y_top * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="Measured device memory over time">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    for v in yt:
        y = Y(v * GiB)
        out.append(f'<line x1="{left}" y1="{y:.2f}" x2="{left + pw}" y2="{y:.2f}" stroke="#e5e5e5" stroke-width="1"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.2f}" font-size="11" {_FONT} fill="#444444" '
                   f'text-anchor="end">{v:g}</text>')
    for v in xt:
        x = X(v)
        out.append(f'<line x1="{x:.2f}" y1="{top_m + ph}" x2="{x:.2f}" y2="{top_m + ph + 4}" stroke="#444444"/>')
        out.append(f'<text x="{x:.2f}" y="{top_m + ph + 17}" font-size="11" {_FONT} fill="#444444" '
                   f'text-anchor="middle">{v:g}</text>')
    out.append(f'<line x1="{left}" y1="{top_m + ph}" x2="{left + pw}" y2="{top_m + ph}" stroke="#444444"/>')
    out.append(f'<line x1="{left}" y1="{top_m}" x2="{left}" y2="{top_m + ph}" stroke="#444444"/>')
    out.append(f'<text x="{left + pw / 2:.2f}" y="{height - 6}" font-size="11" {_FONT} fill="#444444" '
               f'text-anchor="middle">time (s)</text>')
    out.append(f'<text x="14" y="{top_m + ph / 2:.2f}" font-size="11" {_FONT} fill="#444444" '
               f'text-anchor="middle" transform="rotate(-90 14 {top_m + ph / 2:.2f})">GiB</text>')
    for p in phases:
        t = p.get("t")
        if isinstance(t, (int, float)) and 0 <= t <= x_top:
            x = X(float(t))
            out.append(f'<line x1="{x:.2f}" y1="{top_m}" x2="{x:.2f}" y2="{top_m + ph}" '
                       f'stroke="#bbbbbb" stroke-width="1" stroke-dasharray="2,3"/>')
            out.append(f'<text x="{x + 3:.2f}" y="{top_m + 10}" font-size="9" {_FONT} fill="#777777">'
                       f'{esc(p.get("phase", ""))}</text>')
    for value, color, label in ((predicted, "#0072B2", "predicted"), (available, "#C00000", "available")):
        if value:
            y = Y(value)
            out.append(f'<line x1="{left}" y1="{y:.2f}" x2="{left + pw}" y2="{y:.2f}" stroke="{color}" '
                       f'stroke-width="1.5" stroke-dasharray="6,4"/>')
            out.append(f'<text x="{left + pw - 4}" y="{y - 4:.2f}" font-size="11" {_FONT} fill="{color}" '
                       f'text-anchor="end">{label} {_gib(value)} GiB</text>')
    if pts:
        coords = " ".join(f"{X(t):.1f},{Y(u):.1f}" for t, u in pts)
        out.append(f'<polyline points="{coords}" fill="none" stroke="#D55E00" stroke-width="2"/>')
        peak_t, peak_u = max(pts, key=lambda p: p[1])
        out.append(f'<circle cx="{X(peak_t):.2f}" cy="{Y(peak_u):.2f}" r="3.5" fill="#D55E00"/>')
        out.append(f'<text x="{left + 6}" y="{top_m - 8}" font-size="12" {_FONT} fill="#D55E00">'
                   f'measured peak {_gib(peak_u)} GiB</text>')
    else:
        out.append(f'<text x="{left + pw / 2:.2f}" y="{top_m + ph / 2:.2f}" font-size="13" {_FONT} '
                   f'fill="#777777" text-anchor="middle">no samples recorded</text>')
    out.append("</svg>")
    return "\n".join(out)
