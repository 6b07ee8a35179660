"""The hardware panel: each GPU with a memory bar (used by other processes and the driver /
free), its driver and CUDA versions and the processes holding its memory, then RAM and CPU.

``HardwareMonitor`` probes off the UI thread, once a second by default, and never starts a
probe while one is still running. Where NVML is missing or failing the panel says so, in
NVML's own words, and fills in the rest (RAM, CPU): a machine without a GPU is a valid one.

``CARDFIT_FAKE_MACHINE=path/to/detect.json`` (for docs and tests) loads the machine from a
``cardfit detect --json`` document instead of probing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QPainter, QPalette, QPen
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from cardfit.core.hardware.gpu import GpuInfo
from cardfit.core.hardware.machine import MachineInfo
from cardfit.core.units import fmt_bytes
from cardfit.gui import theme
from cardfit.gui.workers import TaskRunner

FAKE_MACHINE_ENV = "CARDFIT_FAKE_MACHINE"


def load_machine() -> MachineInfo:
    """This machine, or the one ``$CARDFIT_FAKE_MACHINE`` describes (docs and tests)."""
    fake = os.environ.get(FAKE_MACHINE_ENV)
    if fake:
        return MachineInfo.from_json(Path(fake).read_text(encoding="utf-8"))
    from cardfit.core.hardware.machine import probe_machine

    return probe_machine()


class HardwareMonitor(QObject):
    """Probes the machine on a timer, off the UI thread; ``updated(MachineInfo)`` on the UI
    thread after each probe, ``failed(str)`` when a probe raised (it should not)."""

    updated = Signal(object)
    failed = Signal(str)

    def __init__(self, runner: TaskRunner, source: Callable[[], MachineInfo] = load_machine,
                 interval_ms: int = 1000, parent: QObject | None = None):
        super().__init__(parent)
        self._runner = runner
        self._source = source
        self._busy = False
        self.probes = 0
        self.timer = QTimer(self)
        self.timer.setInterval(max(200, interval_ms))
        self.timer.timeout.connect(self.refresh)

    def start(self) -> None:
        self.refresh()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def set_interval(self, ms: int) -> None:
        self.timer.setInterval(max(200, int(ms)))

    def refresh(self) -> bool:
        """Start a probe unless one is running. True when one was started."""
        if self._busy:
            return False
        self._busy = True
        self._runner.submit(self._source, on_result=self._done, on_error=self._error, key="hardware")
        return True

    def _done(self, machine: MachineInfo) -> None:
        self._busy = False
        self.probes += 1
        self.updated.emit(machine)

    def _error(self, exc: BaseException) -> None:
        self._busy = False
        self.failed.emit(f"could not read the hardware: {exc}")


class MemoryBar(QWidget):
    """A horizontal bar: used (by others) | free, scaled to the total."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.total = 0
        self.used = 0
        self.setMinimumWidth(160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(240, max(12, self.fontMetrics().height() - 2))

    def set_values(self, used: int | None, total: int | None) -> None:
        self.used, self.total = int(used or 0), int(total or 0)
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        pal = self.palette()
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(pal.color(QPalette.ColorRole.Base))
        p.drawRoundedRect(r, 3, 3)
        if self.total > 0 and self.used > 0:
            frac = min(1.0, self.used / self.total)
            p.setBrush(theme.memory_others(pal))
            p.drawRoundedRect(QRectF(r.x(), r.y(), max(2.0, r.width() * frac), r.height()), 3, 3)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(theme.memory_border(pal), 1))
        p.drawRoundedRect(r, 3, 3)
        p.end()


def _small(text: str = "") -> QLabel:
    lab = QLabel(text)
    lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    lab.setWordWrap(True)
    return lab


class GpuBox(QFrame):
    """One GPU: name, memory bar, figures, versions and processes."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        self.title = QLabel()
        f = self.title.font()
        f.setBold(True)
        self.title.setFont(f)
        self.bar = MemoryBar()
        self.memory = _small()
        self.details = _small()
        self.processes = _small()
        for w in (self.title, self.bar, self.memory, self.details, self.processes):
            lay.addWidget(w)

    def set_gpu(self, gpu: GpuInfo) -> None:
        self.title.setText(gpu.label())
        if not gpu.ok:
            self.bar.set_values(0, 0)
            self.memory.setText(f"could not be read: {gpu.error}")
            self.details.setText("")
            self.processes.setText("")
            return
        total, free, used = gpu.memory_total_bytes, gpu.memory_free_bytes, gpu.memory_used_bytes
        self.bar.set_values(used, total)
        if total is None or free is None:
            self.memory.setText("memory: NVML does not report it on this card")
        else:
            self.memory.setText(f"<b>{fmt_bytes(free)} free</b> of {fmt_bytes(total)} · "
                                f"{fmt_bytes(used or 0)} used by other processes and the driver")
        bits = []
        if gpu.driver_version:
            bits.append(f"driver {gpu.driver_version}")
        if gpu.cuda_driver_version:
            bits.append(f"CUDA {gpu.cuda_driver_version}")
        if gpu.compute_capability:
            bits.append(f"compute {gpu.compute_capability}")
        if gpu.temperature_c is not None:
            bits.append(f"{gpu.temperature_c} °C")
        if gpu.power_draw_w is not None:
            lim = f"/{gpu.power_limit_w:.0f}" if gpu.power_limit_w else ""
            bits.append(f"{gpu.power_draw_w:.0f}{lim} W")
        if gpu.utilization_gpu_pct is not None:
            bits.append(f"util {gpu.utilization_gpu_pct}%")
        if gpu.mig_mode:
            bits.append("MIG on")
        self.details.setText(" · ".join(bits))
        if gpu.processes:
            procs = sorted(gpu.processes, key=lambda q: -(q.used_bytes or 0))
            text = ", ".join(f"{q.name or 'pid'} {q.pid} ({fmt_bytes(q.used_bytes) if q.used_bytes is not None else 'size hidden'})"
                             for q in procs[:4])
            more = f" and {len(procs) - 4} more" if len(procs) > 4 else ""
            self.processes.setText(f"processes: {text}{more}")
        else:
            self.processes.setText("no other processes on this GPU")
        self.setToolTip(f"{gpu.name}\nUUID {gpu.uuid}\nPCI {gpu.pci_bus_id}")


class HostBox(QFrame):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        self.title = QLabel("<b>RAM and CPU</b>")
        self.bar = MemoryBar()
        self.ram = _small()
        self.cpu = _small()
        for w in (self.title, self.bar, self.ram, self.cpu):
            lay.addWidget(w)

    def set_machine(self, m: MachineInfo) -> None:
        h = m.host
        if h.ram_total_bytes:
            avail = h.ram_available_bytes or 0
            self.bar.set_values(h.ram_total_bytes - avail, h.ram_total_bytes)
            swap = f" · swap {fmt_bytes(h.swap_total_bytes)}" if h.swap_total_bytes else " · no swap"
            self.ram.setText(f"<b>{fmt_bytes(avail)} available</b> of {fmt_bytes(h.ram_total_bytes)}{swap}")
        else:
            self.bar.set_values(0, 0)
            self.ram.setText("RAM: could not be read")
        cores = ""
        if h.cpu_cores_logical:
            cores = f", {h.cpu_cores_physical or '?'} cores / {h.cpu_cores_logical} threads"
        self.cpu.setText(f"{h.cpu_model or 'CPU model unknown'}{cores}")
        self.cpu.setToolTip(h.os or "")


class HardwarePanel(QWidget):
    """What is in this machine: GPU boxes, then RAM/CPU, or NVML's message when it has no
    usable GPU."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.machine: MachineInfo | None = None
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._gpu_boxes: list[GpuBox] = []
        self.message = QLabel("Reading the hardware…")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_box = QFrame()
        self.message_box.setFrameShape(QFrame.Shape.StyledPanel)
        ml = QVBoxLayout(self.message_box)
        ml.setContentsMargins(8, 6, 8, 6)
        ml.addWidget(self.message)
        self.host = HostBox()
        self._row.addWidget(self.message_box, 2)
        self._row.addWidget(self.host, 1)
        self.host.hide()

    def gpu_boxes(self) -> list[GpuBox]:
        return list(self._gpu_boxes)

    def set_machine(self, m: MachineInfo) -> None:
        self.machine = m
        gpus = m.gpus
        while len(self._gpu_boxes) > len(gpus):
            box = self._gpu_boxes.pop()
            self._row.removeWidget(box)
            box.deleteLater()
        while len(self._gpu_boxes) < len(gpus):
            box = GpuBox()
            self._row.insertWidget(len(self._gpu_boxes), box, 2)
            self._gpu_boxes.append(box)
        for box, gpu in zip(self._gpu_boxes, gpus):
            box.set_gpu(gpu)
        if gpus and m.nvml_ok:
            self.message_box.hide()
        else:
            self.message.setText(self._no_gpu_text(m))
            self.message_box.show()
        self.host.set_machine(m)
        self.host.show()

    @staticmethod
    def _no_gpu_text(m: MachineInfo) -> str:
        if m.nvml_ok and not m.gpus:
            why = "NVML works but lists no GPU."
        else:
            why = m.nvml_message or "NVML could not be used."
        why = why[:1].upper() + why[1:]
        return ("<b>No NVIDIA GPU detected.</b> " + _html_escape(why)
                + "<br>Pick a what-if card below to plan for any GPU.")

    def summary(self) -> str:
        """The panel's text, for tests and accessibility."""
        parts = [b.title.text() + " " + b.memory.text() for b in self._gpu_boxes]
        if self.message_box.isVisibleTo(self):
            parts.append(self.message.text())
        parts.append(self.host.ram.text())
        return "\n".join(parts)

    def show_error(self, text: str) -> None:
        self.message.setText(_html_escape(text))
        self.message_box.show()


def _html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
