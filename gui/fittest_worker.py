"""Runs one fit test off the UI thread: a ``FitTestWorker`` (a QObject moved to its own
``QThread``) makes the ``FitTestRun``, starts it and iterates its blocking ``events()``,
re-emitting each as a queued signal; the UI thread only paints (napari's worker pattern).

Every ending is a ``FitTestResult`` on ``finished``: a request the launcher refuses (no
usable interpreter, a workload it cannot run) becomes an "error" result, never an exception
in the window. ``cancel()`` is called from the UI thread and goes straight to
``FitTestRun.cancel()`` (thread-safe), since the worker's thread is busy reading events.

Threads live in a module-level set until they end, so closing the window mid-run never
destroys a running ``QThread``; ``shutdown(timeout_ms)`` (wired to the application's
``aboutToQuit``) cancels what still runs and waits for it.
"""

from __future__ import annotations

import threading
import traceback
from datetime import datetime, timezone
from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from cardfit.core.errors import CardfitError
from cardfit.core.fittest.result import FitTestResult
from cardfit.gui import pyside_refcount

pyside_refcount.install()  # PySide6 6.12.0 leaks references to None and True (see there)

__all__ = ["FitTestWorker", "start_worker", "shutdown", "live_workers", "error_result"]

_LIVE: set["FitTestWorker"] = set()
_QUIT_HOOKED = False


def error_result(message: str, request=None, spec=None, prediction: int | None = None) -> FitTestResult:
    """An "error" FitTestResult for a run that could not start (shown like any other)."""
    model = {"id": getattr(spec, "id", None), "name": getattr(spec, "name", None), "params": None}
    try:
        workload = request.workload.to_json() if request is not None else {}
    except Exception:  # noqa: BLE001
        workload = {}
    return FitTestResult(status="error", message=message, phase="init", predicted_bytes=prediction,
                         model=model, workload=workload,
                         device=getattr(request, "resolved_device", None) if request is not None else None,
                         started=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


class FitTestWorker(QObject):
    """One fit test. Signals (all delivered on the UI thread):
    ``launched(run)`` once the child process started (the ``FitTestRun``: prediction,
    capacity); ``event(dict)`` for each child event except the last; ``finished(result)``
    with the ``FitTestResult``."""

    launched = Signal(object)
    event = Signal(object)  # a dict; "object" passes it through untouched (no QVariantMap round trip)
    finished = Signal(object)

    def __init__(self, request, spec=None, run_factory=None):
        super().__init__()
        self.request = request
        self.spec = spec
        self._factory = run_factory
        self._run = None
        self._lock = threading.Lock()
        self._cancelled = False
        self.result: FitTestResult | None = None
        self.thread: QThread | None = None

    @property
    def run_obj(self):
        return self._run

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    @property
    def pid(self) -> int | None:
        run = self._run
        return getattr(run, "pid", None) if run is not None else None

    def cancel(self, kill: bool = False) -> None:
        """Stop the run (from any thread): SIGTERM, SIGKILL after the launcher's grace."""
        with self._lock:
            self._cancelled = True
            run = self._run
        if run is not None:
            run.cancel(kill=kill)

    @Slot()
    def work(self) -> None:  # the worker's thread
        result = None
        try:
            result = self._work()
        except BaseException as exc:  # noqa: BLE001 -- the window shows it; the app stays up
            msg = str(exc) if isinstance(exc, CardfitError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, CardfitError):
                msg += "\n" + traceback.format_exc(limit=4)
            result = error_result(f"the fit test could not run: {msg}", self.request, self.spec,
                                  getattr(self._run, "prediction_bytes", None))
        finally:
            self.result = result
            self.finished.emit(result)

    def _work(self) -> FitTestResult:
        if self._factory is not None:
            run = self._factory(self.request, self.spec)
        else:
            from cardfit.core.fittest.launcher import FitTestRun

            run = FitTestRun(self.request, self.spec)
        with self._lock:
            self._run = run
            cancelled = self._cancelled
        if cancelled:
            run.cancel()  # before start: the launcher ends it as "cancelled" without a process
        else:
            run.start()
        self.launched.emit(run)
        for ev in run.events():
            if ev.get("type") == "end":
                return ev["result"]
            self.event.emit(ev)
        return run.wait()


class _Reaper(QObject):
    """Lives on the UI thread: forgets a worker once its thread has ended (a queued call,
    so a QThread is never dropped from inside its own ``finished``)."""

    @Slot()
    def reap(self) -> None:
        for w in list(_LIVE):
            if w.thread is not None and w.thread.isFinished():
                w.thread.wait()
                _LIVE.discard(w)


_reaper: _Reaper | None = None


def start_worker(request, spec=None, *, run_factory=None, on_event=None, on_finished=None,
                 on_launched=None) -> FitTestWorker:
    """A worker on a fresh thread, started. Pass slots of a QObject on the UI thread (or
    connect to the worker's signals yourself): they are called there, queued."""
    global _QUIT_HOOKED, _reaper
    if _reaper is None:
        _reaper = _Reaper()
    worker = FitTestWorker(request, spec, run_factory)
    thread = QThread()
    thread.setObjectName("cardfit-fittest")
    worker.thread = thread
    worker.moveToThread(thread)
    if on_event is not None:
        worker.event.connect(on_event)
    if on_launched is not None:
        worker.launched.connect(on_launched)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.finished.connect(thread.quit)
    thread.started.connect(worker.work)
    thread.finished.connect(_reaper.reap)
    _LIVE.add(worker)
    app = QCoreApplication.instance()
    if app is not None and not _QUIT_HOOKED:
        app.aboutToQuit.connect(_reaper_shutdown)
        _QUIT_HOOKED = True
    thread.start()
    return worker


def _reaper_shutdown() -> None:
    shutdown()


def live_workers() -> list[FitTestWorker]:
    return [w for w in _LIVE if w.thread is not None and w.thread.isRunning()]


def shutdown(timeout_ms: int = 10_000) -> bool:
    """Cancel every running fit test and wait for their threads; True when all ended."""
    workers = list(_LIVE)
    for w in workers:
        w.cancel()
    ok = True
    for w in workers:
        if w.thread is not None and not w.thread.wait(timeout_ms):
            w.cancel(kill=True)
            ok = w.thread.wait(2000) and ok
    return ok
