"""``MemorySampler``: a background thread that reads a GPU's memory use through NVML at a
fixed rate (1..50 Hz) into a bounded ring buffer, for live plots and peak tracking.

* Sleep-based and drift-corrected: ticks are scheduled on absolute ``time.monotonic()``
  times, so the rate does not slide with the cost of each NVML call; ticks missed while the
  machine was busy (or suspended) are skipped, never replayed in a burst. One NVML memory
  query costs microseconds, so 50 Hz is negligible CPU.
* ``stop()`` wakes the thread at once (it waits on an Event, not in ``time.sleep``).
* If NVML fails mid-run (GPU lost, driver gone), the sampler records ``error`` (and
  ``error_status``), stops, and keeps the samples it had; no exception leaves the thread.
* The optional ``callback(sample)`` runs on the sampler thread: a GUI must hand the value
  to its own thread (a Qt signal does). A callback that raises is reported in
  ``callback_error`` and does not stop sampling.

It reads through ``cardfit.core.hardware.nvml``, so ``nvml.set_backend(fake)`` drives it in
tests. ``used_bytes`` is NVML's device-wide used memory (total - free, every process and the
driver's reservation), the figure nvidia-smi and the fit-test child report.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from cardfit.core.errors import HardwareError, UsageError
from cardfit.core.hardware import nvml
from cardfit.core.hardware.nvml import NvmlError, is_na

__all__ = ["MemorySample", "MemorySampler", "next_tick"]


def next_tick(scheduled: float, now: float, period: float) -> float:
    """The next tick time: one period after the previous *scheduled* tick (so the rate does
    not drift with the cost of each read); when that is already past, the first tick on the
    same grid that is still ahead (missed ticks are skipped, not replayed in a burst)."""
    nxt = scheduled + period
    if nxt < now:
        nxt += (math.floor((now - nxt) / period) + 1) * period
    return nxt


@dataclass(frozen=True)
class MemorySample:
    t: float  # time.monotonic() seconds
    used_bytes: int
    free_bytes: int
    total_bytes: int


class MemorySampler:
    MIN_HZ = 1.0
    MAX_HZ = 50.0

    def __init__(self, gpu_index: int = 0, hz: float = 10.0, *, window_s: float = 600.0,
                 callback: Callable[[MemorySample], Any] | None = None):
        try:
            hz = float(hz)
        except (TypeError, ValueError):
            raise UsageError(f"sampling rate '{hz}' is not a number (use 1 to 50 Hz)") from None
        if not (self.MIN_HZ <= hz <= self.MAX_HZ) or math.isnan(hz):
            raise UsageError(f"sampling rate {hz:g} Hz is out of range (use 1 to 50 Hz)")
        if not isinstance(gpu_index, int) or gpu_index < 0:
            raise UsageError(f"GPU index '{gpu_index}' is not a GPU number (0, 1, ...)")
        if not window_s > 0:
            raise UsageError(f"sampling window {window_s} s must be positive")
        self.gpu_index = gpu_index
        self.hz = hz
        self.period = 1.0 / hz
        self.capacity = max(1, int(math.ceil(window_s * hz)))
        self.callback = callback
        self._buf: collections.deque[MemorySample] = collections.deque(maxlen=self.capacity)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None
        self._peak: int | None = None
        self.count = 0  # samples taken in total (the buffer keeps the last ``capacity``)
        self.error: str | None = None
        self.error_status: str | None = None
        self.callback_error: str | None = None

    # -- control ------------------------------------------------------------------------------

    def start(self) -> "MemorySampler":
        """Open the GPU and start sampling. Raises ``HardwareError`` (``NvmlUnavailable``
        with the reason) when NVML or this GPU cannot be used; raises nothing later."""
        if self._thread is not None:
            raise RuntimeError("MemorySampler.start() called twice")
        nvml.require()
        handle = nvml.nvml_query("nvmlDeviceGetHandleByIndex", self.gpu_index)
        if is_na(handle):
            count = nvml.state().device_count
            raise HardwareError(f"GPU {self.gpu_index} not found (NVML sees {count} GPU"
                                f"{'s' if count != 1 else ''})")
        self._handle = handle
        self._thread = threading.Thread(target=self._run, name=f"cardfit-mem-gpu{self.gpu_index}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop sampling and wait for the thread (it wakes at once)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the sampler has stopped by itself (error) or been stopped; True if so."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "MemorySampler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- data ---------------------------------------------------------------------------------

    def samples(self) -> list[MemorySample]:
        """A copy of the buffered samples, oldest first."""
        with self._lock:
            return list(self._buf)

    def latest(self) -> MemorySample | None:
        with self._lock:
            return self._buf[-1] if self._buf else None

    def peak_used_bytes(self) -> int | None:
        """Highest used memory seen since start (also beyond the buffer's window)."""
        with self._lock:
            return self._peak

    # -- the thread -----------------------------------------------------------------------------

    def _read(self) -> MemorySample:
        info = nvml.nvml_query("nvmlDeviceGetMemoryInfo", self._handle)
        if is_na(info):
            raise HardwareError(f"GPU {self.gpu_index}: NVML does not report memory use for it")
        total, free = int(info.total), int(info.free)
        used = int(getattr(info, "used", total - free))
        return MemorySample(t=time.monotonic(), used_bytes=used, free_bytes=free, total_bytes=total)

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                sample = self._read()
            except NvmlError as exc:
                self.error, self.error_status = str(exc), exc.status.value
                break
            except Exception as exc:  # noqa: BLE001 - nothing escapes the thread
                self.error = f"{type(exc).__name__}: {exc}"
                break
            with self._lock:
                self._buf.append(sample)
                self.count += 1
                if self._peak is None or sample.used_bytes > self._peak:
                    self._peak = sample.used_bytes
            if self.callback is not None:
                try:
                    self.callback(sample)
                except Exception as exc:  # noqa: BLE001
                    self.callback_error = f"{type(exc).__name__}: {exc}"
            now = time.monotonic()
            next_t = next_tick(next_t, now, self.period)
            if self._stop.wait(next_t - now):
                break
        self._stop.set()
