"""Settings, caches and data go where the platform expects them (platformdirs; the XDG
variables on Linux), never into the folder cardfit is installed in."""

from __future__ import annotations

import sys

import pytest

from cardfit.core import paths
from cardfit.core.errors import CardfitError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG layout is Linux's")


def test_xdg_variables_move_each_folder(tmp_path, monkeypatch):
    for name in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.setenv(f"XDG_{name}_HOME", str(tmp_path / name.lower()))
    assert paths.config_dir() == tmp_path / "config" / "cardfit"
    assert paths.cache_dir() == tmp_path / "cache" / "cardfit"
    assert paths.data_dir() == tmp_path / "data" / "cardfit"
    assert paths.xdg_data_home() == tmp_path / "data"


def test_defaults_are_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.delenv(f"XDG_{name}_HOME", raising=False)
    assert paths.config_dir() == tmp_path / ".config" / "cardfit"
    assert paths.cache_dir() == tmp_path / ".cache" / "cardfit"
    assert paths.data_dir() == tmp_path / ".local" / "share" / "cardfit"
    for d in (paths.config_dir(), paths.cache_dir(), paths.data_dir()):
        assert not d.resolve().is_relative_to(paths.install_dir())


def test_never_the_install_folder(monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(paths.install_dir() / "cache"))
    with pytest.raises(CardfitError, match="install folder"):
        paths.cache_dir()


def test_ensure_creates_and_reports(tmp_path):
    made = paths.ensure(tmp_path / "a" / "b")
    assert made.is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CardfitError, match="cannot create"):
        paths.ensure(tmp_path / "file" / "sub")
