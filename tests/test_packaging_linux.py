"""Linux desktop integration: the desktop entry and AppStream metainfo in packaging/linux/
pass their validators, the icon is one file in the hicolor layout, and `cardfit desktop`
installs and removes the entry under $XDG_DATA_HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cardfit.cli import main
from cardfit.core import desktop
from cardfit.core.paths import APP_ID
from packaging_support import REPO, clean_env, run

LINUX = REPO / "packaging" / "linux"
ENTRY = LINUX / f"{APP_ID}.desktop"
METAINFO = LINUX / f"{APP_ID}.metainfo.xml"
ICON = REPO / "resources" / "icons" / "cardfit.svg"

needs_dfv = pytest.mark.skipif(not shutil.which("desktop-file-validate"),
                               reason="desktop-file-validate missing: bash packaging/system-deps.sh installs it")


def desktop_file_validate(path: Path) -> str:
    """desktop-file-validate's complaints (errors and warnings; hints are advice)."""
    out = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True, timeout=30)
    bad = [ln for ln in (out.stdout + out.stderr).splitlines() if "error:" in ln or "warning:" in ln]
    assert (out.returncode == 0) == (not [ln for ln in bad if "error:" in ln]), out.stdout + out.stderr
    return "\n".join(bad)


def entry_keys(text: str) -> dict:
    return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln and not ln.startswith("#"))


@needs_dfv
def test_desktop_entry_validates():
    assert desktop_file_validate(ENTRY) == ""
    keys = entry_keys(ENTRY.read_text())
    assert keys["Icon"] == APP_ID and keys["Exec"] == "cardfit-gui" and keys["Type"] == "Application"


@pytest.mark.skipif(not shutil.which("appstreamcli"),
                    reason="appstreamcli missing: bash packaging/system-deps.sh installs it")
def test_metainfo_validates():
    out = subprocess.run(["appstreamcli", "validate", "--no-net", str(METAINFO)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # Warnings and errors fail; infos (e.g. tags newer than this appstream) may remain.
    assert not [ln for ln in out.stdout.splitlines() if ln.startswith(("W:", "E:"))], out.stdout


def test_metainfo_names_the_entry_and_the_docs_screenshots():
    root = ET.parse(METAINFO).getroot()
    assert root.findtext("id") == APP_ID
    assert root.find("launchable").text == ENTRY.name
    images = [el.text for el in root.iter("image")]
    assert len(images) == 2
    for url in images:
        assert url.startswith("https://") and "/docs/" in url, url
        local = REPO / "docs" / url.rsplit("/docs/", 1)[1]
        assert local.is_file(), f"the screenshot {local} is missing"
        assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from cardfit import __version__

    assert [r.get("version") for r in root.iter("release")][0] == __version__


def test_icon_is_one_svg_in_the_hicolor_layout():
    linked = LINUX / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    assert linked.resolve() == ICON.resolve()
    root = ET.parse(ICON).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 128 128"  # square, as icon themes expect


def test_icon_renders(qapp):
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(ICON))
    assert renderer.isValid()
    img = QImage(64, 64, QImage.Format.Format_ARGB32)
    img.fill(0)
    p = QPainter(img)
    renderer.render(p)
    p.end()
    # The check-mark badge (green) is drawn in the lower right.
    c = img.pixelColor(47, 45)
    assert c.alpha() == 255 and c.green() > 120 > c.red(), c.name()


def test_exec_quoting_follows_the_spec():
    assert desktop.exec_quote("/opt/cardfit/cardfit") == "/opt/cardfit/cardfit"
    assert desktop.exec_quote("/home/a b/venv/bin/cardfit-gui") == '"/home/a b/venv/bin/cardfit-gui"'
    # Inside quotes \ " ` $ take a backslash; the string level then doubles every backslash.
    assert desktop.exec_quote('/x/$y') == '"/x/\\\\$y"'
    assert desktop.exec_quote("50%") == "50%%"


@needs_dfv
def test_entry_with_awkward_paths_still_validates(tmp_path):
    text = desktop.entry_text(["/home/ann smith/my $env/bin/python", "-m", "cardfit", "gui"])
    path = tmp_path / ENTRY.name
    path.write_text(text)
    assert desktop_file_validate(path) == ""
    assert "Exec=\"/home/ann smith/my \\\\$env/bin/python\" -m cardfit gui\n" in text


@needs_dfv
def test_install_and_uninstall_under_xdg_data_home(tmp_path, monkeypatch, capsys):
    data_home = tmp_path / "share"
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    entry = data_home / "applications" / ENTRY.name
    icon = data_home / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"

    assert main(["desktop", "install", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["installed"] and doc["entry"] == str(entry) and doc["icon"] == str(icon)
    assert icon.read_bytes() == ICON.read_bytes()
    assert desktop_file_validate(entry) == ""
    keys = entry_keys(entry.read_text())
    argv = keys["Exec"].split()
    # The Exec line starts this very install (a venv that need not be on PATH).
    assert Path(argv[0]).is_file() and os.access(argv[0], os.X_OK), argv
    assert keys["Icon"] == APP_ID

    assert main(["desktop"]) == 0  # again: replaces its own copy
    assert entry.is_file()

    assert main(["desktop", "--uninstall"]) == 0
    out = capsys.readouterr().out
    assert str(entry) in out and str(icon) in out
    assert not entry.exists() and not icon.exists()
    assert main(["desktop", "uninstall"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_foreign_entry_is_left_alone(tmp_path, capsys):
    entry = tmp_path / "applications" / ENTRY.name
    entry.parent.mkdir(parents=True)
    entry.write_text("[Desktop Entry]\nType=Application\nName=cardfit (distro)\nExec=cardfit\n")
    assert main(["desktop", "uninstall", "--data-home", str(tmp_path)]) == 2
    assert "not written by cardfit" in capsys.readouterr().err
    assert main(["desktop", "install", "--data-home", str(tmp_path), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "desktop"
    assert "distro" in entry.read_text()


def test_status_and_usage(tmp_path, capsys):
    assert main(["desktop", "status", "--data-home", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["installed"] is False
    assert main(["desktop", "status", "--uninstall"]) == 2


def test_command_line_honours_xdg_data_home(tmp_path):
    """The real command, as a user types it, in a fresh process."""
    env = clean_env(tmp_path, XDG_DATA_HOME=str(tmp_path / "xdg"))
    proc = run([sys.executable, "-m", "cardfit", "desktop", "install"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "xdg" / "applications" / ENTRY.name).is_file()
    proc = run([sys.executable, "-m", "cardfit", "desktop", "--uninstall"], env, tmp_path)
    assert proc.returncode == 0 and not (tmp_path / "xdg" / "applications" / ENTRY.name).exists()
