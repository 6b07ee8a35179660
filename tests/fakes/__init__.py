"""Test doubles for what CI lacks (an NVIDIA GPU and its driver), and fixtures for them.

A test module uses the fixtures by importing them:  ``from fakes import use_fake_nvml, real_nvml``
(the tests/ folder is on sys.path under pytest's default import mode).
"""

from __future__ import annotations

import ctypes
import sys

import psutil
import pytest

from fakes.fake_nvml import FakeGpu, FakeNvml, FakeProcess, h100, rtx4090  # noqa: F401


def nvml_library_present() -> bool:
    """Whether this machine has the NVIDIA driver library (then the no-GPU tests skip)."""
    name = "nvml.dll" if sys.platform == "win32" else "libnvidia-ml.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def absent_pid(start: int = 3_999_999) -> int:
    """A PID no process has right now (for processes that only NVML knows, as in a
    container that does not share the host's PID namespace)."""
    pid = start
    while psutil.pid_exists(pid):
        pid -= 1
    return pid


@pytest.fixture
def use_fake_nvml():
    """``install(*gpus, **FakeNvml kwargs) -> FakeNvml``: route NVML to a fake; undone
    after the test."""
    from cardfit.core.hardware import nvml

    def install(*gpus: FakeGpu, **kw) -> FakeNvml:
        fake = FakeNvml(list(gpus), **kw)
        nvml.set_backend(fake)
        return fake

    yield install
    nvml.set_backend(None)


@pytest.fixture
def real_nvml():
    """The real pynvml, freshly initialised, and forgotten again after the test."""
    from cardfit.core.hardware import nvml

    nvml.set_backend(None)
    yield nvml
    nvml.set_backend(None)
