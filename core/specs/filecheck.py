"""Opening a model file the user named, safely: only regular files, reads bounded by a
limit we choose (never by a size the file claims), every failure a ModelSpecError naming
the file.

Why not ``Path.read_bytes()``: a ``config.json`` that is a link to ``/dev/zero`` reports a
size of 0 and then never ends, and a named pipe blocks ``open()`` until someone writes to
it. So files are opened non-blocking, checked to be regular files with ``fstat`` on the
open descriptor (no race with a swapped path), and read with an explicit cap.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from cardfit.core.errors import ModelSpecError


def os_reason(exc: OSError) -> str:
    """'Permission denied', 'No such file or directory', ... without the path (the
    ModelSpecError names the source already)."""
    return exc.strerror or type(exc).__name__


def open_regular(path: str | os.PathLike, source: str | None = None) -> BinaryIO:
    """``open(path, "rb")`` for a regular file (links followed); ModelSpecError for a folder,
    a device, a pipe, a dangling link, an unreadable or vanished file."""
    source = source if source is not None else str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise ModelSpecError("is a folder, not a file", source=source) from None
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL in the name
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
        if isinstance(exc, FileNotFoundError) and os.path.islink(path):
            reason = "a link to a file that does not exist"
        raise ModelSpecError(f"cannot read: {reason}", source=source) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelSpecError("is a folder, not a file", source=source)
        if not stat.S_ISREG(st.st_mode):
            raise ModelSpecError("is not a regular file (a device, pipe or socket): cardfit only reads"
                                 " model files", source=source)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return open(fd, "rb")  # noqa: SIM115 - the caller closes it
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | os.PathLike, limit: int, source: str | None = None,
                 what: str = "file") -> bytes:
    """The whole of a small file (a config.json, an index), refusing one over ``limit``
    bytes without reading more than ``limit + 1``."""
    source = source if source is not None else str(path)
    with open_regular(path, source) as fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise ModelSpecError(f"is {size:,} bytes; a {what} is far smaller (limit"
                                     f" {limit // (1024 * 1024)} MiB)", source=source)
            data = fh.read(limit + 1)
        except OSError as exc:
            raise ModelSpecError(f"cannot read: {os_reason(exc)}", source=source) from None
    if len(data) > limit:  # grew while we read it
        raise ModelSpecError(f"is over the {limit // (1024 * 1024)} MiB limit for a {what}", source=source)
    return data


def printable(text: str, limit: int = 120) -> str:
    """A name read from a file (a tensor name, a GGUF key) made safe for a one-line message:
    control characters escaped, overlong names cut."""
    out = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[: limit + 1])
    return out if len(text) <= limit else out[:limit] + "..."
