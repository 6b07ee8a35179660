"""HostInfo (RAM, CPU, OS) and torch_versions (lazy torch import, in a child process)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from cardfit.core.hardware.host import HostInfo, _format_cudnn, cpu_model, os_string, probe_host

REPO = Path(__file__).resolve().parents[1]

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R)   Platinum 8480+
"""
GRACE_CPUINFO = """processor\t: 0
BogoMIPS\t: 2000.00
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd4f
"""


def test_probe_host_reads_this_machine():
    h = probe_host()
    assert h.ram_total_bytes and h.ram_total_bytes > 256 * 1024**2
    assert 0 < h.ram_available_bytes <= h.ram_total_bytes
    assert h.swap_total_bytes is not None and h.swap_used_bytes is not None
    assert h.cpu_cores_logical and h.cpu_cores_logical >= 1
    assert h.cpu_cores_physical is None or h.cpu_cores_physical <= h.cpu_cores_logical
    assert h.python == platform.python_version()
    assert h.os and platform.machine() in h.os
    assert h.cpu_model


@pytest.mark.parametrize("text, model", [
    (X86_CPUINFO, "Intel(R) Xeon(R) Platinum 8480+"),
    (GRACE_CPUINFO, "Arm Neoverse V2"),
    (GRACE_CPUINFO.replace("0xd4f", "0xd99"), "Arm CPU (part 0xd99)"),
])
def test_cpu_model_from_cpuinfo(text, model):
    assert cpu_model(text) == model


def test_cpu_model_falls_back_to_platform():
    assert cpu_model("processor : 0\n") == (platform.processor() or platform.machine())


def test_os_string_names_kernel_and_machine():
    text = os_string()
    assert platform.machine() in text
    if sys.platform.startswith("linux"):
        assert f"Linux {platform.release()}" in text


def test_host_json_round_trip():
    h = probe_host()
    assert HostInfo.from_json(json.loads(json.dumps(h.to_json()))) == h
    assert HostInfo.from_json({"cpu_model": "x", "future": 1}) == HostInfo(cpu_model="x")


@pytest.mark.parametrize("raw, text", [(8902, "8.9.2"), (8600, "8.6.0"), (90100, "9.1.0"),
                                       (91002, "9.10.2"), (0, None), (None, None)])
def test_cudnn_version_format(raw, text):
    assert _format_cudnn(raw) == text


def _child(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_host_does_not_import_torch_and_torch_versions_does():
    out = _child("""
import json, sys
import cardfit.core.hardware.host as host, cardfit.core.hardware.machine, cardfit.core.hardware.sampler
before = "torch" in sys.modules
v = host.torch_versions()
print(json.dumps({"before": before, "after": "torch" in sys.modules, "v": v.to_json()}))
""")
    assert out["before"] is False
    v = out["v"]
    if v["error"]:
        assert v["torch"] is None and "torch is not importable" in v["error"]
    else:
        assert out["after"] is True
        assert v["torch"] and v["torch"][0].isdigit()
        assert v["cuda_available"] is None  # not asked


def test_torch_versions_reports_why_torch_is_missing():
    out = _child("""
import json, sys
sys.modules["torch"] = None  # makes `import torch` fail as if not installed
from cardfit.core.hardware.host import torch_versions
print(json.dumps(torch_versions(check_cuda=True).to_json()))
""")
    assert out["torch"] is None and out["cuda_available"] is None
    assert out["error"].startswith("torch is not importable: ModuleNotFoundError")
