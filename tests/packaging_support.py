"""Helpers for tests/test_packaging_*.py: a clean environment for installed copies of
cardfit, a PNG reader, and a stand-in for downloading the dependencies.

The dependency stand-in: installing the wheel into a fresh environment would download
torch and Qt again (gigabytes). Instead the wheel goes in with ``--no-deps`` beside a
tiny wheel whose only file is a ``.pth`` line naming this environment's site-packages, so
the same versions pip resolved here satisfy its requirements (``pip check`` proves that
they do). A path line in a .pth adds the folder to sys.path without running that folder's
own .pth files, so this checkout's editable install stays out: ``cardfit`` is imported
from the new environment, which the tests check.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import subprocess
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIM = "cardfit_test_deps"


def clean_env(home: Path, **extra: str) -> dict:
    """The environment for an installed cardfit: nothing of this checkout on PYTHONPATH,
    settings, data and caches in ``home``, Qt offscreen."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CARDFIT_FAKE_MACHINE")}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        env[name] = str(home / name.lower())
    env["QT_QPA_PLATFORM"] = "offscreen"
    env.update(extra)
    return env


def run(cmd, env, cwd, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                          cwd=str(cwd), timeout=timeout, stdin=subprocess.DEVNULL)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file; AssertionError when it is not one."""
    data = Path(path).read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def deps_shim_wheel(folder: Path) -> Path:
    """Writes the .pth stand-in wheel (see the module's docstring) into ``folder``."""
    site = sysconfig.get_paths()["purelib"]
    ver = "0"
    info = f"{SHIM}-{ver}.dist-info"
    files = {
        f"{SHIM}.pth": site + "\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {SHIM}\nVersion: {ver}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: cardfit-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    path = Path(folder) / f"{SHIM}-{ver}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            data = text.encode()
            z.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path
