"""Work off the UI thread: ``TaskRunner.submit(fn, *args, on_result=..., on_error=...)``
runs ``fn`` on a ``QThreadPool`` and calls back on the UI thread.

The callbacks are kept by the runner (a QObject living on the UI thread) and called from
its own slot, reached through a queued signal: the worker thread never touches a widget.
``submit(..., key="matrix")`` makes a keyed task: a newer task with the same key makes the
older one's result stale, and stale results are dropped (the user moved on).
"""

from __future__ import annotations

import itertools
import sys
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot


class _Job(QRunnable):
    def __init__(self, runner: "TaskRunner", task_id: int, fn: Callable, args: tuple, kwargs: dict):
        super().__init__()
        self.setAutoDelete(True)
        self._runner = runner
        self._id = task_id
        self._fn, self._args, self._kwargs = fn, args, kwargs

    def run(self) -> None:  # worker thread
        try:
            value, error = self._fn(*self._args, **self._kwargs), None
        except BaseException as exc:  # noqa: BLE001 - reported to the UI, never lost
            value, error = None, exc
            exc.__cardfit_traceback__ = traceback.format_exc()
        try:
            self._runner._finished.emit(self._id, value, error)
        except RuntimeError:
            pass  # the window (and its runner) went away while we worked


class TaskRunner(QObject):
    """Runs callables on a private thread pool; results come back on the UI thread."""

    _finished = Signal(int, object, object)
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, max_threads: int = 4):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[str | None, Callable | None, Callable | None]] = {}
        self._latest: dict[str, int] = {}
        self._finished.connect(self._dispatch)

    def submit(self, fn: Callable, *args: Any, on_result: Callable | None = None,
               on_error: Callable | None = None, key: str | None = None, **kwargs: Any) -> int:
        task_id = next(self._ids)
        self._callbacks[task_id] = (key, on_result, on_error)
        if key is not None:
            self._latest[key] = task_id
        was_idle = len(self._callbacks) == 1
        self.pool.start(_Job(self, task_id, fn, args, kwargs))
        if was_idle:
            self.busy_changed.emit(True)
        return task_id

    def pending(self, key: str | None = None) -> int:
        if key is None:
            return len(self._callbacks)
        return sum(1 for k, _, _ in self._callbacks.values() if k == key)

    def is_idle(self) -> bool:
        return not self._callbacks

    @Slot(int, object, object)
    def _dispatch(self, task_id: int, value: Any, error: BaseException | None) -> None:
        key, on_result, on_error = self._callbacks.pop(task_id, (None, None, None))
        stale = key is not None and self._latest.get(key) != task_id
        try:
            if not stale:
                if error is None:
                    if on_result is not None:
                        on_result(value)
                elif on_error is not None:
                    on_error(error)
                else:
                    print(getattr(error, "__cardfit_traceback__", repr(error)), file=sys.stderr)
        finally:
            if not self._callbacks:
                self.busy_changed.emit(False)

    def wait(self, msecs: int = 5000) -> bool:
        return self.pool.waitForDone(msecs)
