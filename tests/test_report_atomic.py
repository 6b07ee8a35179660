"""core/atomic.py: whole file or none, and errors that name the path and the reason."""

from __future__ import annotations

import os

import pytest

from cardfit.core import atomic
from cardfit.core.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from cardfit.core.errors import FitTestError, ReportError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert _leftovers(tmp_path) == ["a.txt"]
    atomic_write_bytes(tmp_path / "empty.bin", b"")
    assert (tmp_path / "empty.bin").read_bytes() == b""


def test_new_file_gets_ordinary_permissions(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask


def test_missing_folder_names_path(tmp_path):
    p = tmp_path / "nope" / "a.html"
    with pytest.raises(ReportError, match=r"cannot write .*a\.html: the folder .*nope does not exist"):
        atomic_write_text(p, "x")


def test_folder_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ReportError, match="is not a folder"):
        atomic_write_text(tmp_path / "f" / "a.md", "x")


def test_target_that_is_a_folder(tmp_path):
    (tmp_path / "d.json").mkdir()
    with pytest.raises(ReportError, match="it is a folder"):
        atomic_write_text(tmp_path / "d.json", "x")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_folder_gives_os_reason(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ReportError, match="Permission denied"):
            atomic_write_text(ro / "a.html", "x")
        assert _leftovers(ro) == []
    finally:
        ro.chmod(0o700)


def test_failure_while_writing_leaves_old_file_and_no_temp(tmp_path):
    p = tmp_path / "r.html"
    p.write_text("old")
    with pytest.raises(ReportError, match=r"cannot write .*r\.html: disk on fire"):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise OSError(28, "disk on fire")
    assert p.read_text() == "old"
    assert _leftovers(tmp_path) == ["r.html"]


def test_failure_of_the_rename_leaves_nothing(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(ReportError, match="cross-device"):
        atomic_write_text(tmp_path / "r.md", "x")
    assert _leftovers(tmp_path) == []


def test_writer_that_writes_nothing_is_a_failure(tmp_path):
    with pytest.raises(ReportError, match="nothing was written"):
        with atomic_path(tmp_path / "r.pdf"):
            pass
    assert _leftovers(tmp_path) == []


def test_other_error_kind_and_passthrough(tmp_path):
    with pytest.raises(FitTestError, match=r"such\.json: the folder"):
        atomic_write_text(tmp_path / "no" / "such.json", "x", error=FitTestError)
    with pytest.raises(ReportError, match="mine"):
        with atomic_path(tmp_path / "a.json"):
            raise ReportError("mine")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("x")
            raise KeyboardInterrupt
    assert _leftovers(tmp_path) == []
