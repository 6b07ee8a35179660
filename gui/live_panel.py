"""The fit test's live memory plot: device memory used (NVML, what nvidia-smi shows for the
process: the figure that decides whether a job fits), torch reserved and allocated over
time, against the card's available memory and the engine's prediction; the phases (CUDA
init, build, warm-up, steps, cleanup) as bands; readouts; and the verdict at the end.

``LivePanel.feed(event)`` takes the child's JSON events one by one (as the launcher or a
recorded stream gives them) and only stores them: samples go into a fixed-size numpy ring
buffer, and a ``QTimer`` redraws at about 25 frames a second with ``setData`` on the
existing curves (pyqtgraph's ``examples/scrollingPlots.py`` pattern), so a 50 Hz stream
never costs a redraw per event. ``finish(result)`` shows the verdict of a
``FitTestResult``.

Streams come in three shapes, all read by ``load_stream``: the child's own lines
(``core/fittest/child.py``: absolute NVML "used", the baseline in ``hello``), the
launcher's events (``cardfit test --stream``: "used" already the process's own, with
``device_used_total`` beside it, then a ``summary`` line), and ``tests/gpu/run_cases.py``
recordings (``{"case": id, "line": "<child line>"}``). A saved ``FitTestResult`` JSON
replays too. On a CPU run (``--device cpu``) there is no device memory: the plot shows the
process's RSS instead.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from cardfit.core.errors import FitTestError
from cardfit.core.fittest.result import FitTestResult
from cardfit.core.units import GiB, MiB, fmt_bytes
from cardfit.gui import theme
from cardfit.gui import pyside_refcount

pyside_refcount.install()  # PySide6 6.12.0 leaks references to None and True (see there)

__all__ = ["LivePanel", "RingBuffer", "Replay", "load_stream", "result_from_stream", "PHASE_NAMES",
           "verdict_text"]

# Display names of the child's phases; consecutive "step" phases (one per step) make one band.
PHASE_NAMES = {"init": "CUDA init", "build": "build", "warmup": "warm-up", "step": "steps",
               "cleanup": "cleanup"}
# Band fills (Okabe-Ito hues, low alpha so the curves stay readable on both palettes).
_PHASE_FILL = {"init": (140, 140, 140, 40), "build": (86, 180, 233, 40), "warmup": (240, 228, 66, 55),
               "step": (0, 158, 115, 40), "cleanup": (204, 121, 167, 40)}
_CURVE = {"used": "#0072b2", "reserved": "#e69f00", "allocated": "#009e73", "rss": "#0072b2"}
_PREDICTION = "#9467bd"
_CAPACITY = "#d55e00"

FRAME_MS = 40  # ~25 redraws a second
DEFAULT_CAPACITY = 1 << 16  # samples kept: 65k = 22 min at 50 Hz, beyond the default 10-min limit

# Ring buffer columns.
T, USED, RESERVED, ALLOCATED, RSS = range(5)


class RingBuffer:
    """Fixed-capacity rows of floats (NaN = unknown). When full, the oldest rows go; the
    panel keeps its peaks separately, so a peak survives its row."""

    def __init__(self, capacity: int, columns: int):
        if capacity < 2:
            raise ValueError("a ring buffer needs room for 2 rows or more")
        self.capacity = int(capacity)
        self._data = np.full((self.capacity, columns), np.nan)
        self._written = 0

    def __len__(self) -> int:
        return min(self._written, self.capacity)

    @property
    def written(self) -> int:
        return self._written

    def append(self, row: Iterable[float]) -> None:
        self._data[self._written % self.capacity] = tuple(row)
        self._written += 1

    def clear(self) -> None:
        self._data[:] = np.nan
        self._written = 0

    def view(self) -> np.ndarray:
        """The rows oldest first (a copy only once the buffer has wrapped)."""
        n = self._written
        if n <= self.capacity:
            return self._data[:n]
        i = n % self.capacity
        return np.concatenate((self._data[i:], self._data[:i]))

    def last(self) -> np.ndarray | None:
        if not self._written:
            return None
        return self._data[(self._written - 1) % self.capacity]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _nan(v: float | None) -> float:
    return np.nan if v is None else v


def _where(phase: str | None) -> str:
    return f" in {PHASE_NAMES.get(phase, phase)}" if phase else ""


def verdict_text(r: FitTestResult, sampled_peak: float | None = None) -> tuple[str, str]:
    """(headline, details) for a result: "Fits with 63.3 GiB to spare" / "Out of memory in
    steps at 78.9 GiB" / ..., then measured vs predicted with the error in %."""
    cpu = r.peak_device_bytes is None and (r.device == "cpu" or r.gpu.get("name") == "CPU"
                                           or r.peak_rss_bytes is not None)
    measured = r.measured_bytes
    if measured is None and sampled_peak:
        measured = int(sampled_peak)
    what = "peak RSS (CPU run)" if cpu else "measured peak"
    if r.status == "fits":
        head = "Fits"
        room = (r.available_bytes - measured) if (r.available_bytes is not None and measured is not None) else None
        if room is not None:
            head += f" with {fmt_bytes(room, 2)} to spare"
        if cpu:
            head += " (CPU run)"
    elif r.status == "oom":
        head = f"Out of memory{_where(r.phase)}"
        if measured:
            head += f" at {fmt_bytes(measured, 2)}"
    elif r.status == "timeout":
        head = f"Timed out{_where(r.phase)}"
    elif r.status == "cancelled":
        head = f"Cancelled{_where(r.phase)}"
    elif r.status == "crashed":
        head = f"Crashed{_where(r.phase)}"
    else:
        head = f"Failed{_where(r.phase)}"
    parts = []
    if measured is not None:
        parts.append(f"{what} {fmt_bytes(measured, 2)}")
    if r.predicted_bytes is not None:
        pred = f"predicted {fmt_bytes(r.predicted_bytes, 2)}"
        err = r.error_pct
        if err is None and not cpu and measured and r.status == "fits":
            err = (r.predicted_bytes - measured) / measured * 100.0  # contract: (predicted-measured)/measured
        if err is not None:
            pred += f" (error {err:+.1f} %)"
        elif cpu:
            pred += " for the GPU (not comparable with RSS)"
        parts.append(pred)
    if r.available_bytes is not None:
        parts.append(f"{'host RAM available' if cpu else 'available'} {fmt_bytes(r.available_bytes, 2)}")
    if r.step_seconds is not None:
        parts.append(f"{r.step_seconds:.3g} s per step")
    if r.tokens_per_second is not None:
        parts.append(f"{r.tokens_per_second:,.0f} tokens/s")
    details = " · ".join(parts)
    if r.status not in ("fits", "oom") and r.message:
        details = r.message + ("\n" + details if details else "")
    return head, details


class LivePanel(QWidget):
    """The live plot, its readouts and the verdict. ``feed`` events, then ``finish``."""

    phase_changed = Signal(str)  # the child's phase name ("init", "build", "warmup", "step", "cleanup")
    finished = Signal(object)  # the FitTestResult shown

    def __init__(self, parent: QWidget | None = None, capacity: int = DEFAULT_CAPACITY):
        super().__init__(parent)
        self.buffer = RingBuffer(capacity, 5)
        self.plot = pg.PlotWidget()
        self.plot.setAccessibleName("Fit-test memory plot")
        self.plot.setMinimumHeight(240)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("bottom", "time", units="s")
        self.plot.setLabel("left", "memory (GiB)")
        self.plot.enableAutoRange(False)
        item = self.plot.getPlotItem()
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")  # peaks survive downsampling
        self.curves: dict[str, pg.PlotDataItem] = {}
        for key, name, width in (("used", "device used (NVML)", 2.5), ("reserved", "torch reserved", 1.5),
                                 ("allocated", "torch allocated", 1.5)):
            self.curves[key] = self.plot.plot([], [], name=name, connect="finite",
                                              pen=pg.mkPen(_CURVE[key], width=width))
        self.curves["used"].setZValue(10)  # the figure that decides: drawn over torch's counters
        self.prediction_line = pg.InfiniteLine(angle=0, movable=False,
                                               pen=pg.mkPen(_PREDICTION, width=1.5, style=Qt.PenStyle.DashLine),
                                               label="", labelOpts={"position": 0.3, "anchors": [(0, 1), (0, 1)],
                                                                    "color": _PREDICTION})
        self.capacity_line = pg.InfiniteLine(angle=0, movable=False,
                                             pen=pg.mkPen(_CAPACITY, width=1.5, style=Qt.PenStyle.DashDotLine),
                                             label="", labelOpts={"position": 0.02, "anchors": [(0, 0), (0, 0)],
                                                                  "color": _CAPACITY})
        for line in (self.prediction_line, self.capacity_line):
            line.setVisible(False)
            self.plot.addItem(line, ignoreBounds=True)
        self._bands: list[dict] = []  # {"phase", "t0", "t1", "region", "label"}

        self.now_label = QLabel()
        self.peak_label = QLabel()
        self.predicted_label = QLabel()
        self.capacity_label = QLabel()
        self.phase_label = QLabel()
        self.verdict_label = QLabel()
        self.verdict_label.setAccessibleName("Fit-test verdict")
        self.verdict_label.setWordWrap(True)
        self.verdict_label.setAutoFillBackground(True)
        self.verdict_label.setMargin(6)
        f = QFont(self.verdict_label.font())
        f.setPointSizeF(f.pointSizeF() * 1.25)
        f.setBold(True)
        self.verdict_label.setFont(f)
        # The legend lives under the plot, where it never hides a curve or a phase.
        self.legend_label = QLabel()
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)
        self.detail_label = QLabel()
        self.detail_label.setWordWrap(True)
        self.detail_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        readouts = QGridLayout()
        for col, lab in enumerate((self.phase_label, self.now_label, self.peak_label, self.predicted_label,
                                   self.capacity_label)):
            lab.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            readouts.addWidget(lab, 0, col)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.legend_label)
        lay.addLayout(readouts)
        lay.addWidget(self.verdict_label)
        lay.addWidget(self.detail_label)

        self._timer = QTimer(self)
        self._timer.setInterval(FRAME_MS)
        self._timer.timeout.connect(self.refresh)
        self._apply_palette()
        self.reset()

    # ---- state ---------------------------------------------------------------------------
    def reset(self, keep_reference: bool = True) -> None:
        """Empty, ready for a new run (keeps the prediction and capacity lines unless
        ``keep_reference`` is False)."""
        self.buffer.clear()
        if not keep_reference:
            self._prediction = self._capacity = None
            self.prediction_line.setVisible(False)
            self.capacity_line.setVisible(False)
        for c in self.curves.values():
            c.setData([], [])
        for b in self._bands:
            self.plot.removeItem(b["region"])
            self.plot.removeItem(b["label"])
        self._bands = []
        self._baseline: float | None = None
        self._own_given = False  # the launcher's events carry device_used already as the process's own
        self._cpu: bool | None = None  # unknown until hello or the first sample
        self._peak: float | None = None  # process's own device bytes (RSS on a CPU run)
        self._peak_reserved: float | None = None
        self._phase: str | None = None
        self._t_last = 0.0
        self._steps_done = 0
        self._dirty = False
        self.result: FitTestResult | None = None
        self.events_seen = 0
        self.verdict_label.setText("")
        self.verdict_label.setVisible(False)
        self.detail_label.setText("")
        self._set_curve_names()
        self._update_readouts()

    def set_reference(self, prediction_bytes: int | None = None, capacity_bytes: int | None = None) -> None:
        """The engine's prediction and the card's available memory, drawn as lines (either
        may be None to leave it as is)."""
        if prediction_bytes is not None:
            self._prediction = float(prediction_bytes)
            self.prediction_line.setVisible(True)
            self.prediction_line.setPos(self._prediction / self._scale)
            self.prediction_line.label.setFormat(f"predicted {fmt_bytes(self._prediction, 2)}")
        if capacity_bytes is not None:
            self._capacity = float(capacity_bytes)
            self.capacity_line.setVisible(True)
            self.capacity_line.setPos(self._capacity / self._scale)
            self.capacity_line.label.setFormat(f"{self._available_word()} {fmt_bytes(self._capacity, 2)}")
        self._dirty = True
        self._update_readouts()

    _prediction: float | None = None
    _capacity: float | None = None
    _scale: float = GiB  # bytes per plot unit: GiB, or MiB for a small (CPU) run

    @property
    def prediction_bytes(self) -> float | None:
        return self._prediction

    @property
    def capacity_bytes(self) -> float | None:
        return self._capacity

    @property
    def peak_bytes(self) -> float | None:
        return self._peak

    @property
    def sample_count(self) -> int:
        return len(self.buffer)

    @property
    def cpu_run(self) -> bool:
        return bool(self._cpu)

    @property
    def phase(self) -> str | None:
        return self._phase

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def bands(self) -> list[tuple[str, float, float | None]]:
        """(phase, start, end) of each band, end None while it runs."""
        return [(b["phase"], b["t0"], b["t1"]) for b in self._bands]

    def start_live(self) -> None:
        """Start the redraw timer (``feed`` starts it too)."""
        if not self._timer.isActive():
            self._timer.start()

    # ---- events --------------------------------------------------------------------------
    def feed(self, ev: dict) -> None:
        """One event of the child's stream (any of the shapes ``load_stream`` reads)."""
        if not isinstance(ev, dict):
            return
        kind = ev.get("type")
        self.events_seen += 1
        t = _num(ev.get("t"))
        if t is not None:
            self._t_last = max(self._t_last, t)
        if kind == "sample":
            self._sample(ev, t)
        elif kind == "phase":
            self._phase_event(ev, t)
        elif kind == "mark":
            own = self._own(ev)
            if own is not None and not self._cpu:
                self._peak = own if self._peak is None else max(self._peak, own)
            self._dirty = True
        elif kind == "hello":
            self._hello(ev)
        elif kind == "step":
            if not ev.get("warmup"):
                self._steps_done += 1
        elif kind == "end":
            r = ev.get("result")
            if isinstance(r, FitTestResult):
                self.finish(r)
            return
        else:
            return
        self.start_live()

    def _hello(self, ev: dict) -> None:
        self._baseline = _num(ev.get("baseline_device_used"))
        dev = ev.get("device")
        self._cpu = (isinstance(dev, str) and dev == "cpu") or ev.get("memory_source") == "none"
        self._own_given = "predicted_bytes" in ev or "available_bytes" in ev  # the launcher added them
        pred = _num(ev.get("predicted_bytes"))
        avail = _num(ev.get("available_bytes"))
        if avail is None and not self._cpu:
            total = _num(ev.get("device_total"))
            if total is not None:
                avail = total - (self._baseline or 0)
        self._set_curve_names()
        self.set_reference(int(pred) if pred is not None else None, int(avail) if avail is not None else None)

    def _own(self, ev: dict) -> float | None:
        used = _num(ev.get("device_used"))
        if used is None:
            return None
        if "device_used_total" in ev or self._own_given:
            return used
        return max(0.0, used - (self._baseline or 0.0))

    def _sample(self, ev: dict, t: float | None) -> None:
        own = self._own(ev)
        rss = _num(ev.get("rss"))
        if self._cpu is None:
            self._cpu = own is None and rss is not None
            self._set_curve_names()
        if t is None:
            last = self.buffer.last()
            t = float(last[T]) if last is not None else 0.0
        self.buffer.append((t, _nan(own), _nan(_num(ev.get("reserved"))), _nan(_num(ev.get("allocated"))),
                            _nan(rss)))
        main = rss if self._cpu else own
        if main is not None:
            self._peak = main if self._peak is None else max(self._peak, main)
        res = _num(ev.get("reserved"))
        if res is not None:
            self._peak_reserved = res if self._peak_reserved is None else max(self._peak_reserved, res)
        self._dirty = True

    def _phase_event(self, ev: dict, t: float | None) -> None:
        phase = ev.get("phase")
        if not isinstance(phase, str):
            return
        t = self._t_last if t is None else t
        self._phase = phase
        if self._bands and self._bands[-1]["phase"] == phase:
            pass  # one band for all the steps
        else:
            if self._bands:
                self._bands[-1]["t1"] = t
            fill = _PHASE_FILL.get(phase, (128, 128, 128, 30))
            region = pg.LinearRegionItem(values=(t, t), movable=False, brush=pg.mkBrush(*fill),
                                         pen=pg.mkPen(None))
            region.setZValue(-10)
            label = pg.TextItem(PHASE_NAMES.get(phase, phase), anchor=(0, 0), color=self._text_color())
            label.setZValue(-5)
            self.plot.addItem(region, ignoreBounds=True)
            self.plot.addItem(label, ignoreBounds=True)
            self._bands.append({"phase": phase, "t0": t, "t1": None, "region": region, "label": label})
        self._dirty = True
        self.phase_changed.emit(phase)

    # ---- drawing -------------------------------------------------------------------------
    def refresh(self) -> None:
        """One frame: ``setData`` on the curves and move the bands (only when something changed)."""
        if not self._dirty:
            return
        self._dirty = False
        data = self.buffer.view()
        x = data[:, T]
        top = max(v for v in (self._peak, self._peak_reserved, self._prediction,
                              None if self._cpu else self._capacity, 1 << 20) if v is not None)
        scale = GiB if top >= 2 * GiB else MiB
        if scale != self._scale:
            self._scale = scale
            self.plot.setLabel("left", f"memory ({'GiB' if scale == GiB else 'MiB'})")
            for line, v in ((self.prediction_line, self._prediction), (self.capacity_line, self._capacity)):
                if v is not None:
                    line.setPos(v / scale)
        if self._cpu:
            self.curves["used"].setData(x, data[:, RSS] / scale, connect="finite")
            self.curves["reserved"].setData([], [])
            self.curves["allocated"].setData([], [])
        else:
            for key, col in (("used", USED), ("reserved", RESERVED), ("allocated", ALLOCATED)):
                y = data[:, col]
                if len(y) and np.isnan(y).all():
                    self.curves[key].setData([], [])
                else:
                    self.curves[key].setData(x, y / scale, connect="finite")
        t_end = max(self._t_last, float(x[-1]) if len(x) else 0.0)
        x0 = float(x[0]) if len(x) and self.buffer.written > self.buffer.capacity else 0.0
        top = top / scale * 1.08
        x1 = max(t_end, x0 + 1.0)
        self.plot.setXRange(x0, x1, padding=0.01)
        self.plot.setYRange(0, top, padding=0)
        for b in self._bands:
            t1 = b["t1"] if b["t1"] is not None else t_end
            b["region"].setRegion((b["t0"], t1))
            b["label"].setPos(max(b["t0"], x0), top)
            # A band narrower than its name shows no name (the readout names the phase).
            px = (t1 - b["t0"]) / (x1 - x0) * max(self.plot.getViewBox().width(), 1.0)
            b["label"].setVisible(px >= 48 or (b is self._bands[-1] and self.running))
        self._update_readouts()

    def _update_readouts(self) -> None:
        last = self.buffer.last()
        now = None
        if last is not None:
            v = last[RSS] if self._cpu else last[USED]
            now = None if np.isnan(v) else float(v)
        word = "RSS" if self._cpu else "Used"
        self.phase_label.setText(f"Phase: {PHASE_NAMES.get(self._phase, self._phase) if self._phase else '-'}")
        self.now_label.setText(f"{word} now: {fmt_bytes(now, 2) if now is not None else '-'}")
        self.peak_label.setText(f"Peak: {fmt_bytes(self._peak, 2) if self._peak is not None else '-'}")
        self.predicted_label.setText(
            f"Predicted: {fmt_bytes(self._prediction, 2) if self._prediction is not None else '-'}")
        word = self._available_word()
        self.capacity_label.setText(f"{word[0].upper() + word[1:]}: "
                                    f"{fmt_bytes(self._capacity, 2) if self._capacity is not None else '-'}")

    def _available_word(self) -> str:
        return "host RAM available" if self._cpu else "available"

    def _set_curve_names(self) -> None:
        name = "process RSS (CPU run)" if self._cpu else "device used (NVML)"
        self.curves["used"].opts["name"] = name
        items = [(_CURVE["used"], "━━", name)]
        if not self._cpu:  # a CPU run has no torch device counters
            items += [(_CURVE["reserved"], "━━", "torch reserved"), (_CURVE["allocated"], "━━", "torch allocated")]
        items += [(_PREDICTION, "╍╍", "predicted"), (_CAPACITY, "╍╍", self._available_word())]
        self.legend_label.setText("&nbsp;&nbsp;&nbsp;".join(
            f'<span style="color:{c}"><b>{sym}</b></span>&nbsp;{text}' for c, sym, text in items))

    def _text_color(self) -> QColor:
        return self.palette().color(QPalette.ColorRole.WindowText)

    def _apply_palette(self) -> None:
        pal = self.palette()
        self.plot.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.Text)
        for side in ("left", "bottom"):
            ax = self.plot.getAxis(side)
            ax.setPen(pg.mkPen(fg))
            ax.setTextPen(pg.mkPen(fg))

    # ---- the end -------------------------------------------------------------------------
    def finish(self, result: FitTestResult) -> None:
        """The run ended: final frame, readouts from the result, the verdict."""
        self.result = result
        self._timer.stop()
        if self._bands and self._bands[-1]["t1"] is None:
            self._bands[-1]["t1"] = self._t_last
        if self._prediction is None and result.predicted_bytes is not None:
            self.set_reference(prediction_bytes=result.predicted_bytes)
        if self._capacity is None and result.available_bytes is not None:
            self.set_reference(capacity_bytes=result.available_bytes)
        measured = result.measured_bytes
        if measured is not None and (self._cpu or result.peak_device_bytes is not None):
            # The result's peak also counts spikes shorter than the sampling period.
            self._peak = max(float(measured), self._peak or 0.0)
        self._dirty = True
        self.refresh()
        head, details = verdict_text(result, self._peak)
        self.verdict_label.setText(head)
        self.detail_label.setText(details)
        kind = {"fits": "fits", "oom": "no"}.get(result.status, "tight")
        if result.status == "fits" and result.headroom_bytes is not None and result.available_bytes:
            if result.headroom_bytes < 0.1 * result.available_bytes:
                kind = "tight"
        pal = self.verdict_label.palette()
        pal.setColor(QPalette.ColorRole.Window, theme.status_fill(kind))
        pal.setColor(QPalette.ColorRole.WindowText, theme.status_text(kind))
        self.verdict_label.setPalette(pal)
        self.verdict_label.setVisible(True)
        self.finished.emit(result)

    def verdict(self) -> str:
        """The headline shown ("" while running)."""
        return self.verdict_label.text()

    def replay(self, path: str | Path, speed: float = 1.0, case: str | None = None,
               prediction_bytes: int | None = None) -> "Replay":
        """Plays a recorded stream into this panel (``speed`` times real time; 0 = at once).
        A child's raw stream carries no prediction: pass the estimator's as
        ``prediction_bytes`` to draw it and get the error in %."""
        events, result = load_stream(path, case, prediction_bytes)
        rp = Replay(self, events, result, speed, prediction_bytes)
        rp.start()
        return rp


# ---- recorded streams -------------------------------------------------------------------

def _events_from_result(doc: dict) -> tuple[list[dict], FitTestResult]:
    r = FitTestResult.from_json(doc)
    cpu = r.peak_device_bytes is None and r.device == "cpu"
    hello = {"type": "hello", "t": 0.0, "device": r.device or ("cpu" if cpu else "cuda:0"),
             "memory_source": "none" if cpu else "nvml", "predicted_bytes": r.predicted_bytes,
             "available_bytes": r.available_bytes}
    evs = [hello]
    timeline = [(p.get("t") or 0.0, 0, {"type": "phase", **p}) for p in r.phases]
    timeline += [(s.get("t") or 0.0, 1, {"type": "sample", "device_used_total": None, **s}) for s in r.samples]
    timeline.sort(key=lambda x: (x[0], x[1]))
    evs += [e for _, _, e in timeline]
    return evs, r


def load_stream(path: str | Path, case: str | None = None,
                prediction_bytes: int | None = None) -> tuple[list[dict], FitTestResult | None]:
    """The events of a recorded fit test and its result (None when the stream has none).
    Reads the child's JSON lines, the launcher's (``cardfit test --stream``), run_cases.py
    recordings (the first case, or ``case``), or a saved ``FitTestResult``. Lines that are
    not JSON events are skipped."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FitTestError(f"cannot read {p}: {exc.strerror or exc}") from None
    stripped = text.lstrip()
    if stripped.startswith("{") and "\n{" not in stripped.rstrip():
        try:
            doc = json.loads(stripped)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("cardfit.fittest/"):
            return _events_from_result(doc)
    events: list[dict] = []
    summary: FitTestResult | None = None
    chosen = case
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and "line" in ev and "case" in ev and "type" not in ev:
            if chosen is None:
                chosen = ev["case"]
            if ev["case"] != chosen or not isinstance(ev["line"], str):
                continue
            try:
                ev = json.loads(ev["line"])
            except ValueError:
                continue
        if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
            continue
        if ev["type"] == "summary":
            doc = {k: v for k, v in ev.items() if k not in ("type", "verdict")}
            try:
                summary = FitTestResult.from_json(doc)
            except FitTestError:
                pass
            continue
        events.append(ev)
    if not events and summary is None:
        raise FitTestError(f"{p}: no fit-test events in it" + (f" for case {case!r}" if case else ""))
    if summary is None:
        summary = result_from_stream(events, prediction_bytes)
    return events, summary


def result_from_stream(events: list[dict], prediction_bytes: int | None = None) -> FitTestResult | None:
    """A ``FitTestResult`` from a raw child stream (its ``result`` line; "crashed" when the
    stream stops without one), as the launcher would have made it."""
    hello = next((e for e in events if e.get("type") == "hello"), {})
    res = next((e for e in reversed(events) if e.get("type") == "result"), None)
    if not events:
        return None
    own_given = "predicted_bytes" in hello or any("device_used_total" in e for e in events[:50])
    base = _num(hello.get("baseline_device_used")) or 0.0
    cpu = hello.get("device") == "cpu" or hello.get("memory_source") == "none"
    pred = prediction_bytes if prediction_bytes is not None else _num(hello.get("predicted_bytes"))
    avail = _num(hello.get("available_bytes"))
    total = _num(hello.get("device_total"))
    if avail is None and total is not None and not cpu:
        avail = total - base
    samples, phases = [], []
    for e in events:
        if e.get("type") == "sample":
            used = _num(e.get("device_used"))
            own = None if used is None else (used if own_given else max(0.0, used - base))
            samples.append({"t": _num(e.get("t")), "phase": e.get("phase"), "device_used": own,
                            "allocated": _num(e.get("allocated")), "reserved": _num(e.get("reserved")),
                            "rss": _num(e.get("rss"))})
        elif e.get("type") == "phase" and isinstance(e.get("phase"), str):
            phases.append({"phase": e["phase"], "t": _num(e.get("t"))})
    versions = next(({k: v for k, v in e.items() if k not in ("type", "t")}
                     for e in events if e.get("type") == "versions"), {})
    child = (res or {}).get("status")
    status = {"ok": "fits", "oom": "oom", "error": "error", "stopped": "cancelled"}.get(child, "crashed")
    peak = _num((res or {}).get("peak_device_bytes"))
    if peak is None and not cpu:
        peak = max((s["device_used"] for s in samples if s["device_used"] is not None), default=None)
    rss = _num((res or {}).get("peak_rss")) or max((s["rss"] for s in samples if s["rss"] is not None), default=None)
    phase = (res or {}).get("phase") if status != "fits" else None
    if status == "crashed" and phases:
        phase = phases[-1]["phase"]
    oom = next((e for e in events if e.get("type") in ("oom", "error")), {})
    message = {"fits": "fits", "oom": "does not fit: out of memory", "cancelled": "cancelled",
               "crashed": "the stream ends without a result"}.get(status, "the fit test failed")
    if oom.get("message"):
        message += f": {str(oom['message']).splitlines()[0][:300]}"
    err = (pred - peak) / peak * 100.0 if (status == "fits" and pred and peak) else None
    step_s = _num((res or {}).get("step_seconds"))
    tps = _num((res or {}).get("tokens_per_second"))
    return FitTestResult(
        status=status, message=message, phase=phase,
        peak_device_bytes=None if cpu or peak is None else int(peak),
        predicted_bytes=int(pred) if pred is not None else None, error_pct=err,
        device_total_bytes=int(total) if total is not None else None,
        available_bytes=int(avail) if avail is not None else None,
        peak_rss_bytes=int(rss) if rss is not None else None, step_seconds=step_s, tokens_per_second=tps,
        samples=samples, phases=phases, versions=versions,
        gpu={"index": None, "name": versions.get("gpu") if not cpu else "CPU"},
        device=hello.get("device") if isinstance(hello.get("device"), str) else None,
        peak_reserved_bytes=int(_num((res or {}).get("peak_reserved")) or 0) or None,
        peak_allocated_bytes=int(_num((res or {}).get("peak_allocated")) or 0) or None)


class Replay(QObject):
    """Feeds recorded events into a panel at ``speed`` times their recorded pace (a
    ``QTimer``, so the window stays live), then ``finish``es with the result. ``speed`` 0
    feeds everything at once."""

    done = Signal(object)

    def __init__(self, panel: LivePanel, events: list[dict], result: FitTestResult | None, speed: float = 1.0,
                 prediction_bytes: int | None = None):
        super().__init__(panel)
        self.prediction_bytes = prediction_bytes
        self.panel = panel
        self.events = list(events)
        self.result = result
        self.speed = float(speed)
        self._i = 0
        self._t0_wall = 0.0
        self._t0_stream: float | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(20)
        self._timer.timeout.connect(self._tick)

    @property
    def finished(self) -> bool:
        return self._i >= len(self.events) and not self._timer.isActive()

    def start(self) -> None:
        self.panel.reset(keep_reference=False)
        if self.prediction_bytes is not None:
            self.panel.set_reference(prediction_bytes=self.prediction_bytes)
        if self.speed <= 0 or not math.isfinite(self.speed):
            for ev in self.events:
                self.panel.feed(ev)
            self._i = len(self.events)
            self._end()
            return
        self._t0_wall = time.monotonic()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        elapsed = (time.monotonic() - self._t0_wall) * self.speed
        while self._i < len(self.events):
            ev = self.events[self._i]
            t = _num(ev.get("t"))
            if t is not None:
                if self._t0_stream is None:
                    self._t0_stream = t
                if t - self._t0_stream > elapsed:
                    return
            self.panel.feed(ev)
            self._i += 1
        self._timer.stop()
        self._end()

    def _end(self) -> None:
        if self.result is not None:
            self.panel.finish(self.result)
        else:
            self.panel.refresh()
        self.done.emit(self.result)
