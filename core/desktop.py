"""Puts cardfit in (and takes it out of) the user's applications menu on Linux: the desktop
entry from packaging/linux/ goes to $XDG_DATA_HOME/applications/, the app icon to
$XDG_DATA_HOME/icons/hicolor/scalable/apps/ (freedesktop desktop-entry and icon-theme
specs). Only the Exec line changes: it names the launcher this very install runs from, so
the menu entry works for a virtual environment or a bundle that is not on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cardfit import __version__
from cardfit.core.errors import CardfitError
from cardfit.core.paths import APP_ID, ensure, xdg_data_home

DESKTOP_NAME = f"{APP_ID}.desktop"
ICON_NAME = f"{APP_ID}.svg"
# Marks an entry this command wrote, so uninstall never removes one a distribution
# package or the user made under the same name.
MARKER_KEY = "X-Cardfit-Installed-By"

# Characters that force quoting of an Exec argument (desktop entry spec, "The Exec key").
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


class DesktopError(CardfitError):
    """The desktop entry could not be installed or removed."""

    kind = "desktop"


def package_root() -> Path:
    """Where the package's own files are: the checkout or site-packages' cardfit/, or the
    bundle's data folder."""
    return Path(__file__).resolve().parent.parent


def template_path() -> Path:
    return package_root() / "packaging" / "linux" / DESKTOP_NAME


def icon_source() -> Path:
    return package_root() / "resources" / "icons" / "cardfit.svg"


def exec_quote(arg: str) -> str:
    """One Exec argument, quoted by the desktop entry spec's rules: inside double quotes
    a backslash escapes " ` $ and \\; then the string-value level escapes each backslash
    again; a literal % is written %%."""
    arg = arg.replace("%", "%%")
    if arg and not (_RESERVED & set(arg)):
        return arg
    inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return ('"' + inner + '"').replace("\\", "\\\\")


def launcher_argv() -> list[str]:
    """The command that opens this install's window."""
    if getattr(sys, "frozen", False):  # the bundle's own executable is the CLI
        return [sys.executable, "gui"]
    # pip and pipx put the gui-script beside the interpreter of the environment.
    folders = [Path(sys.executable).parent]
    if sys.argv and sys.argv[0]:
        folders.append(Path(sys.argv[0]).resolve().parent)
    for folder in folders:
        script = folder / ("cardfit-gui.exe" if os.name == "nt" else "cardfit-gui")
        if script.is_file() and os.access(script, os.X_OK):
            return [str(script)]
    return [sys.executable, "-m", "cardfit", "gui"]


def entry_text(argv: list[str] | None = None) -> str:
    """The desktop entry as installed: the template with Exec naming ``argv``."""
    try:
        lines = template_path().read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DesktopError(f"the desktop entry template {template_path()} cannot be read "
                           f"({exc.strerror or exc}); this install of cardfit is incomplete") from None
    exec_line = "Exec=" + " ".join(exec_quote(a) for a in (argv or launcher_argv()))
    out, seen = [], False
    for line in lines:
        if line.startswith("Exec="):
            line, seen = exec_line, True
        elif line.startswith(("TryExec=", MARKER_KEY + "=")):
            continue
        out.append(line)
    if not seen:
        raise DesktopError(f"{template_path()}: no Exec= line")
    out.append(f"{MARKER_KEY}=cardfit {__version__}")
    return "\n".join(out) + "\n"


@dataclass
class DesktopPaths:
    data_home: Path
    entry: Path = field(init=False)
    icon: Path = field(init=False)

    def __post_init__(self):
        self.data_home = Path(self.data_home)
        self.entry = self.data_home / "applications" / DESKTOP_NAME
        self.icon = self.data_home / "icons" / "hicolor" / "scalable" / "apps" / ICON_NAME

    def to_json(self) -> dict:
        return {"data_home": str(self.data_home), "entry": str(self.entry), "icon": str(self.icon),
                "installed": self.entry.is_file(), "icon_installed": self.icon.is_file()}


def _check_platform() -> None:
    if sys.platform.startswith(("win", "darwin")):
        raise DesktopError("desktop entries are for Linux and BSD desktops (freedesktop.org); on "
                           f"{sys.platform} start the app with `cardfit` or `cardfit-gui`")


def paths(data_home: Path | None = None) -> DesktopPaths:
    return DesktopPaths(Path(data_home) if data_home else xdg_data_home())


def _write(path: Path, data: bytes) -> None:
    ensure(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DesktopError(f"cannot write {path}: {exc.strerror or exc}") from None


def _refresh(p: DesktopPaths) -> None:
    """Best effort: menus and icon themes notice new files by mtime anyway; the caches some
    desktops keep are refreshed where their tools exist."""
    tool = shutil.which("update-desktop-database")
    if tool:
        subprocess.run([tool, "-q", str(p.entry.parent)], capture_output=True, timeout=30, check=False)
    hicolor = p.data_home / "icons" / "hicolor"
    try:
        os.utime(hicolor)
    except OSError:
        pass


def install(data_home: Path | None = None, argv: list[str] | None = None) -> DesktopPaths:
    """Writes the entry and the icon; returns where they went. Replaces an earlier copy."""
    _check_platform()
    p = paths(data_home)
    if p.entry.exists() and MARKER_KEY not in p.entry.read_text(encoding="utf-8", errors="replace"):
        raise DesktopError(f"{p.entry} exists and was not written by cardfit (a distribution "
                           "package's?); remove it yourself if it should be replaced")
    try:
        icon = icon_source().read_bytes()
    except OSError as exc:
        raise DesktopError(f"the app icon {icon_source()} cannot be read ({exc.strerror or exc})") from None
    _write(p.icon, icon)
    _write(p.entry, entry_text(argv).encode("utf-8"))
    os.chmod(p.entry, 0o644)
    _refresh(p)
    return p


def uninstall(data_home: Path | None = None) -> tuple[DesktopPaths, list[Path]]:
    """Removes what ``install`` wrote; returns the paths and the files removed (none when
    nothing was installed). An entry not written by cardfit is left alone."""
    _check_platform()
    p = paths(data_home)
    removed: list[Path] = []
    if p.entry.exists():
        if MARKER_KEY not in p.entry.read_text(encoding="utf-8", errors="replace"):
            raise DesktopError(f"{p.entry} was not written by cardfit; leaving it alone")
        p.entry.unlink()
        removed.append(p.entry)
    if p.icon.exists():
        p.icon.unlink()
        removed.append(p.icon)
    if removed:
        _refresh(p)
    return p, removed


__all__ = ["DesktopError", "DesktopPaths", "entry_text", "exec_quote", "install", "launcher_argv",
           "paths", "uninstall"]
