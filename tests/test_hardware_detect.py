"""`cardfit detect`: the table, the "cardfit.detect/1" JSON and its round trip, the no-GPU
path on this machine for real, and that detect never imports torch."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cardfit.cli import detect_cmd
from cardfit.core.errors import ReportError
from cardfit.core.hardware.gpu import GpuInfo
from cardfit.core.hardware.machine import SCHEMA, MachineInfo, probe_machine
from fakes import FakeProcess, h100, nvml_library_present, real_nvml, rtx4090, use_fake_nvml  # noqa: F401
from fakes.fake_nvml import GPU_IS_LOST, GiB, MiB

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"

TOP_KEYS = {"schema", "cardfit_version", "time", "nvml", "driver_version", "cuda_driver_version",
            "gpus", "host"}
HOST_KEYS = {"ram_total_bytes", "ram_available_bytes", "swap_total_bytes", "swap_used_bytes",
             "cpu_model", "cpu_cores_physical", "cpu_cores_logical", "os", "python"}
GPU_KEYS = {"index", "name", "uuid", "pci_bus_id", "memory_total_bytes", "memory_used_bytes",
            "memory_free_bytes", "memory_reserved_bytes", "driver_version", "cuda_driver_version",
            "compute_capability", "memory_bus_width_bits", "memory_clock_max_mhz", "power_draw_w",
            "power_limit_w", "temperature_c", "utilization_gpu_pct", "utilization_memory_pct",
            "mig_mode", "processes", "unsupported", "notes", "error", "error_status",
            "available_bytes", "processes_bytes", "unattributed_bytes", "bandwidth_bytes_per_s", "bf16"}
PROCESS_KEYS = {"pid", "name", "used_bytes", "kind"}

no_driver_here = pytest.mark.skipif(nvml_library_present(),
                                    reason="this machine has the NVIDIA driver library")


def run_detect(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cardfit")
    detect_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["detect", *argv])
    return args.func(args)


def machine_with_two_gpus(install):
    g0 = rtx4090(compute=[FakeProcess(os.getpid(), 3 * GiB)])
    g0.free = g0.total - 3 * GiB - 500 * MiB
    g1 = h100()
    return install(g0, g1, process_names={})


# -- no GPU, for real ---------------------------------------------------------------------------

@no_driver_here
def test_detect_without_a_gpu_explains_and_exits_0(real_nvml, capsys):
    assert run_detect() == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("No NVIDIA GPU: ") and "library_missing" in first
    assert "--card NAME or --vram SIZE" in out
    assert "RAM" in out and "CPU" in out and "Python" in out
    assert "Traceback" not in out


@no_driver_here
def test_detect_json_without_a_gpu(real_nvml, capsys):
    assert run_detect("--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == TOP_KEYS and set(doc["host"]) == HOST_KEYS
    assert doc["schema"] == SCHEMA and doc["gpus"] == []
    assert doc["nvml"]["status"] == "library_missing" and doc["nvml"]["message"]
    assert doc["driver_version"] is None and doc["cuda_driver_version"] is None
    assert isinstance(doc["host"]["ram_total_bytes"], int) and doc["host"]["ram_total_bytes"] > 0


# -- with fake GPUs -----------------------------------------------------------------------------

def test_detect_table_with_two_gpus(use_fake_nvml, capsys):
    machine_with_two_gpus(use_fake_nvml)
    assert run_detect() == 0
    out = capsys.readouterr().out
    assert out.startswith("2 NVIDIA GPUs: driver 550.54.15, CUDA 12.4 (driver)")
    assert "GPU 0  NVIDIA GeForce RTX 4090  (cc 8.9, bf16, 1008 GB/s)" in out
    assert "GPU 1  NVIDIA H100 80GB HBM3  (cc 9.0, bf16, 3.35 TB/s)" in out
    assert "[###....." in out and "3.5 GiB / 24.0 GiB used, 20.5 GiB free" in out
    assert "1 process 3.0 GiB: " in out and f"(pid {os.getpid()}) 3.0 GiB" in out
    assert "driver reserve 400.0 MiB; other/unlisted 100.0 MiB" in out
    assert "held by driver reserve 480.0 MiB (no processes)" in out
    assert "36 W / 450 W" in out and "41 C" in out
    assert out.isascii()  # prints on any console encoding


def test_detect_table_shows_a_lost_gpu_and_still_exits_0(use_fake_nvml, capsys):
    fake = machine_with_two_gpus(use_fake_nvml)
    fake.gpus[1].not_supported.add("nvmlDeviceGetCudaComputeCapability")
    real = fake.nvmlDeviceGetMemoryInfo

    def memory(h, version=None):
        if h.index == 1:
            fake._raise(GPU_IS_LOST)
        return real(h, version)

    fake.nvmlDeviceGetMemoryInfo = memory
    assert run_detect() == 0
    out = capsys.readouterr().out
    assert "GPU 1  NVIDIA H100 80GB HBM3" in out and "  error: nvmlDeviceGetMemoryInfo:" in out
    assert "GPU 0  NVIDIA GeForce RTX 4090" in out


def test_detect_json_schema_and_round_trip(use_fake_nvml, capsys):
    machine_with_two_gpus(use_fake_nvml)
    assert run_detect("--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == TOP_KEYS and doc["schema"] == "cardfit.detect/1"
    assert doc["nvml"] == {"status": "ok", "message": "NVML is working: 2 NVIDIA GPUs visible"}
    assert doc["driver_version"] == "550.54.15" and doc["cuda_driver_version"] == "12.4"
    assert doc["time"].endswith("Z")
    assert len(doc["gpus"]) == 2
    for g in doc["gpus"]:
        assert set(g) == GPU_KEYS
        for key in ("memory_total_bytes", "memory_used_bytes", "memory_free_bytes", "available_bytes"):
            assert isinstance(g[key], int)
        assert g["available_bytes"] == g["memory_free_bytes"]
        for p in g["processes"]:
            assert set(p) == PROCESS_KEYS
    assert doc["gpus"][1]["memory_total_bytes"] == 85_520_809_984
    back = MachineInfo.from_json(json.dumps(doc))
    assert back.to_json() == doc
    assert back.gpus[0].processes[0].pid == os.getpid()
    assert back.nvml_ok and len(back.usable_gpus()) == 2


def test_recorded_h100_agrees_with_the_catalog():
    """tests/data/detect_h100.json: `detect --json` on a real H100 SXM5 (driver 580.159.04)."""
    from cardfit.core.hardware.cards import find_card

    m = MachineInfo.from_json((DATA / "detect_h100.json").read_text())
    (g,) = m.gpus
    assert m.nvml_ok and g.ok and g.unsupported == []
    card = find_card(g.name)  # the NVML name resolves to the catalog row
    assert card.id == "h100-sxm"
    assert card.total_bytes == g.memory_total_bytes
    assert card.bandwidth_bytes_per_s == pytest.approx(g.bandwidth_bytes_per_s, rel=1e-3)
    assert card.bf16 == g.bf16 and card.compute_capability == g.compute_capability
    # Idle GPU: everything used is the driver's reservation, and free is the rest.
    assert g.memory_used_bytes == g.memory_reserved_bytes == g.unattributed_bytes
    assert g.available_bytes == g.memory_total_bytes - g.memory_used_bytes
    text = detect_cmd.format_machine(m)
    assert "held by driver reserve 480.0 MiB (no processes)" in text


def test_recorded_h200_agrees_with_the_catalog():
    """tests/data/detect_h200.json: `detect --json` on a real H200 (driver 580.159.04), made
    by tests/gpu/h200_session.sh on the device machine."""
    from cardfit.core.hardware.cards import find_card

    m = MachineInfo.from_json((DATA / "detect_h200.json").read_text())
    (g,) = m.gpus
    assert m.nvml_ok and g.ok and g.unsupported == []
    assert m.driver_version == "580.159.04" and m.cuda_driver_version == "13.0"
    card = find_card(g.name)
    assert card.id == "h200"
    assert card.total_bytes == g.memory_total_bytes
    # NVML's bus width x clock gives 4.81 TB/s; NVIDIA publishes 4.8 TB/s.
    assert card.bandwidth_bytes_per_s == pytest.approx(g.bandwidth_bytes_per_s, rel=1e-2)
    assert g.processes == [] and g.available_bytes == g.memory_total_bytes - g.memory_used_bytes
    assert m.host.ram_total_bytes > 100 * GiB and m.host.cpu_cores_logical == 16
    assert "NVIDIA H200" in detect_cmd.format_machine(m)


def test_table_without_a_reported_reserve():
    g = GpuInfo(index=0, name="X", memory_total_bytes=8 * GiB, memory_used_bytes=GiB,
                memory_free_bytes=7 * GiB, unsupported=["memory_reserved_bytes"])
    assert "  held by driver/other 1.0 GiB (no processes)" in detect_cmd.format_gpu(g)


def test_from_json_reads_an_h100_document_and_ignores_unknown_keys():
    doc = {
        "schema": "cardfit.detect/1", "cardfit_version": "0.1.0", "time": "2025-01-01T00:00:00Z",
        "nvml": {"status": "ok", "message": "NVML is working: 1 NVIDIA GPU visible"},
        "driver_version": "570.124.06", "cuda_driver_version": "12.8",
        "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 85520809984,
                  "memory_used_bytes": 503316480, "memory_free_bytes": 85017493504,
                  "compute_capability": "9.0", "memory_bus_width_bits": 5120,
                  "memory_clock_max_mhz": 2619, "processes": [], "a_field_from_the_future": 1}],
        "host": {"ram_total_bytes": 2 * 1024**4, "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
                 "gpu_count_future": 8},
        "extra_top_level": {},
    }
    m = MachineInfo.from_json(doc)
    (g,) = m.gpus
    assert g.available_bytes == 85017493504 and g.unattributed_bytes == 503316480
    assert g.bf16 is True and g.bandwidth_bytes_per_s == pytest.approx(3.352e12, rel=1e-3)
    assert g.driver_version == "570.124.06" and g.cuda_driver_version == "12.8"
    assert m.host.cpu_model.startswith("Intel") and m.host.swap_total_bytes is None


@pytest.mark.parametrize("path", sorted(DATA.glob("detect_*.json")), ids=lambda p: p.name)
def test_recorded_detect_documents_load(path):
    """The lead commits real `cardfit detect --json` outputs here (e.g. an H100)."""
    m = MachineInfo.from_json(path.read_text())
    assert m.schema.startswith("cardfit.detect/")
    for g in m.gpus:
        if g.ok:
            assert g.memory_total_bytes and g.available_bytes is not None
            assert g.available_bytes <= g.memory_total_bytes


@pytest.mark.parametrize("bad", [
    "not json", "[]", json.dumps({"schema": "something/1"}), json.dumps({"gpus": []}),
    json.dumps({"schema": "cardfit.detect/1", "gpus": [{"index": 0, "processes": [{"used_bytes": 1}]}]}),
    json.dumps({"schema": "cardfit.detect/1", "gpus": [{"index": "first"}]}),
])
def test_from_json_rejects_what_is_not_a_detect_document(bad):
    with pytest.raises(ReportError):
        MachineInfo.from_json(bad)


def test_probe_machine_never_raises_when_nvml_fails(use_fake_nvml):
    from fakes.fake_nvml import LIB_RM_VERSION_MISMATCH

    use_fake_nvml(rtx4090(), init_error=LIB_RM_VERSION_MISMATCH)
    m = probe_machine()
    assert m.gpus == [] and m.nvml_status == "driver_mismatch" and "reboot" in m.nvml_message.lower()
    text = detect_cmd.format_machine(m)
    assert text.splitlines()[0].endswith("[driver_mismatch]")


def test_detect_cards_lists_the_catalog(capsys):
    assert run_detect("--cards") == 0
    out = capsys.readouterr().out
    assert "rtx-4090" in out and "h100-sxm" in out and len(out.splitlines()) >= 47
    assert run_detect("--cards", "--json") == 0
    cards = json.loads(capsys.readouterr().out)
    assert len(cards) >= 45 and all(c["kind"] == "catalog" for c in cards)


def test_bar_and_bandwidth_text():
    assert detect_cmd.bar(0, 100, 10) == "[..........]"
    assert detect_cmd.bar(50, 100, 10) == "[#####.....]"
    assert detect_cmd.bar(150, 100, 10) == "[##########]"
    assert detect_cmd.bar(None, 100, 4) == "[????]"
    assert detect_cmd.fmt_bandwidth(3.35e12) == "3.35 TB/s"
    assert detect_cmd.fmt_bandwidth(936e9) == "936 GB/s"
    assert detect_cmd.fmt_bandwidth(1008e9) == "1008 GB/s"
    assert detect_cmd.fmt_bandwidth(None) is None


# -- torch stays out ----------------------------------------------------------------------------

def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)


HEAVY = ("torch", "PySide6", "transformers")


def test_detect_does_not_import_torch():
    code = f"""
import argparse, json, sys
from cardfit.cli import detect_cmd
p = argparse.ArgumentParser()
detect_cmd.register(p.add_subparsers(dest="command"))
for argv in (["detect"], ["detect", "--json"], ["detect", "--cards"]):
    a = p.parse_args(argv)
    assert a.func(a) == 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
sys.stderr.write("HEAVY=" + json.dumps(heavy))
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    heavy = json.loads(proc.stderr.rsplit("HEAVY=", 1)[1])
    assert heavy == []


def test_cardfit_detect_through_the_dispatcher_does_not_import_torch():
    code = f"""
import json, sys
try:
    from cardfit.cli import build_parser
    build_parser()
except ImportError as exc:
    sys.stderr.write("BUILD_FAILED=" + repr(exc)); sys.exit(0)
from cardfit.cli import main
rc = main(["detect", "--json"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
sys.stderr.write("RESULT=" + json.dumps({{"rc": rc, "heavy": heavy}}))
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    if "BUILD_FAILED=" in proc.stderr:
        pytest.skip("another subcommand module does not import yet: "
                    + proc.stderr.rsplit("BUILD_FAILED=", 1)[1])
    result = json.loads(proc.stderr.rsplit("RESULT=", 1)[1])
    assert result == {"rc": 0, "heavy": []}
    assert json.loads(proc.stdout)["schema"] == SCHEMA
