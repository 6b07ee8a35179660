"""Where cardfit keeps what it writes: the folders each platform expects (platformdirs),
never the folder it is installed in (a wheel's site-packages or a bundle may be read-only,
shared by several users, or replaced by the next upgrade).

On Linux that is ``~/.config/cardfit`` (settings), ``~/.cache/cardfit`` (caches) and
``~/.local/share/cardfit`` (data), each moved by its XDG_*_HOME variable; on macOS
``~/Library/...``; on Windows ``%LOCALAPPDATA%\\cardfit``. Qt's QSettings("cardfit",
"cardfit") lands in the same settings folder on Linux.
"""

from __future__ import annotations

import sys
from pathlib import Path

import platformdirs

from cardfit.core.errors import CardfitError

APP_NAME = "cardfit"
# The reverse-DNS id of the desktop entry, its icon and the AppStream metainfo
# (packaging/linux/); a Qt window names it with QGuiApplication.setDesktopFileName.
APP_ID = "io.github.cardfit.Cardfit"


def install_dir() -> Path:
    """The folder cardfit runs from: the package (checkout or site-packages), or the
    bundle's folder when frozen. Nothing is ever written here."""
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent
    return Path(__file__).resolve().parent.parent


def _outside_install(path: Path, what: str) -> Path:
    path = Path(path)
    inst = install_dir()
    try:
        inside = path.resolve().is_relative_to(inst)
    except OSError:
        inside = False
    if inside:
        raise CardfitError(f"the {what} folder {path} is inside cardfit's install folder {inst}; "
                           "set HOME (or the XDG_*_HOME variables) to a folder of your own")
    return path


def config_dir() -> Path:
    """Settings (the GUI's QSettings file lives here on Linux)."""
    return _outside_install(platformdirs.user_config_path(APP_NAME, appauthor=False), "settings")


def cache_dir() -> Path:
    """Things cardfit can make again (downloaded configs, rendered previews)."""
    return _outside_install(platformdirs.user_cache_path(APP_NAME, appauthor=False), "cache")


def data_dir() -> Path:
    """Things the user would miss (saved fit-test results, reports kept by the app)."""
    return _outside_install(platformdirs.user_data_path(APP_NAME, appauthor=False), "data")


def xdg_data_home() -> Path:
    """The user's shared data root ($XDG_DATA_HOME, else ~/.local/share): desktop entries go
    in its applications/, icons in its icons/hicolor/ (freedesktop basedir spec)."""
    return _outside_install(platformdirs.user_data_path(), "data")


def ensure(path: Path) -> Path:
    """``path``, created (with its parents) when missing."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CardfitError(f"cannot create the folder {path}: {exc.strerror or exc}") from None
    return path
