"""Colours that follow the system palette: verdict colours (fits / tight / does not fit) and
one colour per estimate component, picked for the light or the dark palette in use.

Nothing here hard-codes a window or text colour: widgets keep the palette's own, and only
the status hues are ours (readable on both palettes: pale fills with dark text on a light
palette, deep fills with light text on a dark one)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QGuiApplication, QPalette

# Verdict -> (light palette fill, dark palette fill). Hues: green / amber / red.
_STATUS = {
    "fits": ("#c8ecc9", "#1f5a2a"),
    "tight": ("#ffe2a8", "#6b4e0f"),
    "no": ("#f7c4c0", "#6e2320"),
}
# Strong versions for text and icons (verdict labels in the planner).
_STATUS_STRONG = {
    "fits": ("#1b7a2f", "#6fd67f"),
    "tight": ("#a06400", "#f3c04e"),
    "no": ("#b3261e", "#ff8a80"),
}
STATUS_WORDS = {"fits": "fits", "tight": "tight (under 10% to spare)", "no": "does not fit"}

# Component colours of the breakdown bar (Okabe-Ito and Tableau hues, distinct for
# colour-blind readers in the first eight; the rest are rarely present together).
_COMPONENT = {
    "cuda_context": "#8c8c8c",
    "weights": "#0072b2",
    "quant_constants": "#56b4e9",
    "adapters": "#009e73",
    "gradients": "#e69f00",
    "optimizer": "#d55e00",
    "optimizer_temp": "#f0a070",
    "activations": "#cc79a7",
    "logits": "#9467bd",
    "kv_cache": "#17becf",
    "temp_buffers": "#bcbd22",
    "allocator_reserve": "#b0b0b0",
}
# Memory bars of the hardware panel.
_MEM_OTHERS = ("#d98c3f", "#c27a35")  # used by other processes / the driver
_MEM_FREE_BORDER = ("#7a7a7a", "#9a9a9a")


def palette() -> QPalette:
    return QGuiApplication.palette()


def is_dark(pal: QPalette | None = None) -> bool:
    """A dark palette: the window colour is darker than mid-grey."""
    pal = pal or palette()
    return pal.color(QPalette.ColorRole.Window).lightness() < 128


def _pick(pair: tuple[str, str], pal: QPalette | None = None) -> QColor:
    return QColor(pair[1] if is_dark(pal) else pair[0])


def status_fill(status: str, pal: QPalette | None = None) -> QColor:
    return _pick(_STATUS.get(status, _STATUS["no"]), pal)


def status_text(status: str, pal: QPalette | None = None) -> QColor:
    """Text drawn on ``status_fill``: dark on a light palette, light on a dark one."""
    return QColor("#f2f2f2") if is_dark(pal) else QColor("#1a1a1a")


def status_strong(status: str, pal: QPalette | None = None) -> QColor:
    return _pick(_STATUS_STRONG.get(status, _STATUS_STRONG["no"]), pal)


def component_color(key: str) -> QColor:
    return QColor(_COMPONENT.get(key, "#7f7f7f"))


def memory_others(pal: QPalette | None = None) -> QColor:
    return _pick(_MEM_OTHERS, pal)


def memory_border(pal: QPalette | None = None) -> QColor:
    return _pick(_MEM_FREE_BORDER, pal)
