"""Atomic file writing: a reader (or a crash) sees the old file or the whole new one, never
a part of it.

The data go to a temporary file in the same folder (so the final ``os.replace`` is a
rename within one file system, atomic on POSIX and on Windows NTFS), are flushed and
fsync'ed, then renamed over the target; on any failure the temporary file is removed.
POSIX rename(2) semantics; Windows: ``os.replace`` maps to MoveFileEx with
MOVEFILE_REPLACE_EXISTING (Python docs, os.replace).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from cardfit.core.errors import CardfitError, ReportError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_with", "atomic_path"]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _check_folder(path: Path, error: type[CardfitError]) -> None:
    folder = path.parent
    if not folder.exists():
        raise error(f"cannot write {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise error(f"cannot write {path}: {folder} is not a folder")
    if path.is_dir():
        raise error(f"cannot write {path}: it is a folder")


def _fsync_folder(folder: Path) -> None:
    # The rename itself is durable only once the folder's entry is synced (POSIX; not
    # possible, nor needed, on Windows).
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, error: type[CardfitError] = ReportError,
                allow_empty: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` for a writer that wants a file name (Qt's
    QPdfWriter); when the block ends without an exception the file is fsync'ed and renamed
    onto ``path``. Any failure removes the temporary file and raises ``error`` naming the
    path and the operating system's reason (an exception of ``error``'s kind passes as is).
    An empty result counts as a failure unless ``allow_empty``."""
    target = Path(path)
    _check_folder(target, error)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise error(f"cannot write {target}: {_reason(exc)}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or (tmp.stat().st_size == 0 and not allow_empty):
            raise error(f"cannot write {target}: nothing was written")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _keep_mode(target, tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, error) or not isinstance(exc, Exception):
            raise
        if isinstance(exc, CardfitError):
            raise
        raise error(f"cannot write {target}: {_reason(exc)}") from exc
    _fsync_folder(target.parent)


def _keep_mode(target: Path, tmp: Path) -> None:
    """mkstemp makes 0600 files; give the new file the mode an ordinary open() would
    (the old file's, or 0666 minus the umask)."""
    try:
        mode = target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


def atomic_write_bytes(path: str | os.PathLike, data: bytes,
                       error: type[CardfitError] = ReportError) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path, error, allow_empty=True) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8",
                      error: type[CardfitError] = ReportError) -> None:
    atomic_write_bytes(path, text.encode(encoding), error)


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None],
                      error: type[CardfitError] = ReportError) -> None:
    """``write(tmp_path)`` fills a temporary file that then replaces ``path`` atomically."""
    with atomic_path(path, error) as tmp:
        write(tmp)
