"""A work-around for two reference-count bugs of PySide6 6.12.0 that abort Python 3.11 with
"Fatal Python error: bool_dealloc: deallocating True or False" or "none_dealloc:
deallocating None" after a few thousand signals:

- ``SignalInstance.emit`` returns ``True`` without taking a reference to it: ``True`` loses
  one reference per Python-side ``emit`` (pyqtgraph emits about 15 per ``setData`` and
  range change, so a live plot at 25 frames a second dies within seconds);
- every delivery of a C++ signal (``QTimer.timeout``, ``clicked``...) to a Python callable
  loses one reference to ``None``.

Measured here with ``sys.getrefcount`` (PySide6 6.12.0, Python 3.11.7): exactly -1 per emit
and -1 per delivery, whatever the receiver (function, lambda, method, ``@Slot``, queued or
direct). Python 3.12 and later make ``None``, ``True`` and ``False`` immortal (PEP 683), so
there the counts never move and nothing breaks. ``install()`` does the same on older
Pythons: it adds 2**40 references to each of the three singletons, more than any process
can leak, so their counts never reach zero. (Leaking references to immortal singletons is
exactly what PEP 683 makes normal.) Idempotent; does nothing on Python 3.12+.
"""

from __future__ import annotations

import ctypes
import sys
import threading

_lock = threading.Lock()
_done = False
MARGIN = 1 << 40


def needed() -> bool:
    return sys.version_info < (3, 12) and sys.implementation.name == "cpython"


def install() -> bool:
    """Make None / True / False effectively immortal (CPython < 3.12 only); True when done."""
    global _done
    with _lock:
        if _done:
            return True
        if not needed():
            return False
        for obj in (None, True, False):
            # ob_refcnt is the first field of every CPython object (Include/object.h).
            ref = ctypes.c_ssize_t.from_address(id(obj))
            ref.value += MARGIN
        _done = True
        return True


def installed() -> bool:
    return _done
