"""`cardfit gui`: the screenshot, the no-display message, the flags, and that the CLI does
not load Qt until the GUI is asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cardfit.cli.gui_cmd import card_key_from_args
from cardfit.core.errors import UsageError
from gui_support import H100_JSON, gui_settings  # noqa: F401

HERE = Path(__file__).resolve().parent


def _run(args, env_extra=None, drop=(), timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cardfit", *args], capture_output=True, text=True,
                          env=env, cwd=str(HERE), timeout=timeout)


def test_card_flags_become_picker_keys():
    assert card_key_from_args(None, None) is None
    assert card_key_from_args("4090", None) == "catalog:rtx-4090"
    assert card_key_from_args("gpu1", None) == "gpu:1"
    assert card_key_from_args("cuda:0", None) == "gpu:0"
    assert card_key_from_args(None, "24GB") == "custom:24"
    with pytest.raises(UsageError):
        card_key_from_args("no-such-gpu-xyz", None)
    with pytest.raises(UsageError):
        card_key_from_args("4090", "24GB")


def test_cli_does_not_load_qt():
    code = "import sys; from cardfit.cli import build_parser; build_parser(); print('PySide6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(HERE), timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_screenshot(tmp_path):
    from PySide6.QtGui import QImage

    png = tmp_path / "shot.png"
    out = _run(["gui", "--screenshot", str(png), "--size", "1200x800", "--model", "llama-3.1-8b",
                "--task", "lora", "--card", "4090"],
               env_extra={"CARDFIT_FAKE_MACHINE": str(H100_JSON), "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stdout + out.stderr
    img = QImage(str(png))
    assert not img.isNull() and img.width() == 1200 and img.height() == 800


def test_bad_size_is_a_usage_error():
    out = _run(["gui", "--screenshot", "x.png", "--size", "big"])
    assert out.returncode == 2 and "--size" in out.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland check is Linux-only")
def test_no_display_is_a_clear_message():
    out = _run(["gui"], drop=("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    assert out.returncode == 2
    assert "no display" in out.stderr and "Traceback" not in out.stderr
