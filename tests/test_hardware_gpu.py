"""GpuInfo from a fake NVML: every field, processes, unsupported fields, a GPU lost."""

from __future__ import annotations

import os

import psutil
import pytest

from cardfit.core.hardware.gpu import GpuInfo, GpuProcess, format_cuda_version, probe_gpus
from cardfit.core.hardware.nvml import NA
from fakes import FakeProcess, absent_pid, h100, rtx4090, use_fake_nvml  # noqa: F401
from fakes.fake_nvml import GiB, MiB

ME = os.getpid()


def two_gpu_machine(install):
    """GPU 0: an RTX 4090 with our own process (compute + graphics) and a process only NVML
    can name; GPU 1: an H100 whose process sits in two MIG instances."""
    ghost = absent_pid()
    g0 = rtx4090(
        name=b"NVIDIA GeForce RTX 4090",
        compute=[FakeProcess(ME, 2 * GiB), FakeProcess(ghost, 1 * GiB)],
        graphics=[FakeProcess(ME, 2 * GiB)],
    )
    total = g0.total
    g0.free = total - (3 * GiB + 600 * MiB)  # 3 GiB of processes + 600 MiB of driver/other
    g1 = h100(mig=(1, 1), compute=[FakeProcess(777_001, 5 * GiB, 1, 0), FakeProcess(777_001, 3 * GiB, 2, 0)])
    g1.free = g1.total - 8 * GiB - 480 * MiB
    fake = install(g0, g1, process_names={ghost: "/usr/bin/trainer", 777_001: "vllm"})
    return fake, ghost


def test_two_gpus_every_field(use_fake_nvml):
    fake, ghost = two_gpu_machine(use_fake_nvml)
    gpus = probe_gpus()
    assert [g.index for g in gpus] == [0, 1]
    g0, g1 = gpus
    assert g0.ok and g1.ok
    assert g0.name == "NVIDIA GeForce RTX 4090"  # decoded from bytes
    assert g0.uuid.startswith("GPU-") and g0.pci_bus_id == "00000000:01:00.0"
    assert g0.driver_version == "550.54.15" and g0.cuda_driver_version == "12.4"
    assert g0.compute_capability == "8.9" and g0.bf16 is True
    assert g0.memory_total_bytes == 24564 * MiB
    assert g0.memory_used_bytes == 3 * GiB + 600 * MiB
    assert g0.memory_free_bytes == g0.memory_total_bytes - g0.memory_used_bytes
    assert g0.memory_reserved_bytes == 400 * MiB
    assert g0.memory_bus_width_bits == 384 and g0.memory_clock_max_mhz == 10501
    # 2 * 10501 MHz * 384 bit / 8 = 1008 GB/s, the RTX 4090's datasheet figure.
    assert g0.bandwidth_bytes_per_s == pytest.approx(1008.1e9, rel=1e-3)
    assert g0.power_draw_w == 35.5 and g0.power_limit_w == 450.0
    assert g0.temperature_c == 41
    assert (g0.utilization_gpu_pct, g0.utilization_memory_pct) == (3, 1)
    assert g0.mig_mode is None and g0.unsupported == ["mig_mode"]
    assert g1.mig_mode is True and g1.unsupported == []
    # H100 SXM: 2 * 2619 MHz * 5120 bit / 8 = 3.35 TB/s, its datasheet figure.
    assert g1.bandwidth_bytes_per_s == pytest.approx(3.35e12, rel=2e-3)


def test_processes_deduplicated_named_and_sorted(use_fake_nvml):
    fake, ghost = two_gpu_machine(use_fake_nvml)
    g0, g1 = probe_gpus()
    assert [p.pid for p in g0.processes] == [ME, ghost]  # largest first
    mine, other = g0.processes
    assert mine.kind == "compute+graphics" and mine.used_bytes == 2 * GiB  # not 4: one allocation
    assert mine.name == psutil.Process(ME).name()
    assert other.name == "trainer"  # psutil cannot see it; NVML names it
    assert g0.processes_bytes == 3 * GiB
    assert g0.unattributed_bytes == 600 * MiB
    # One process in two MIG instances: its sizes add up.
    assert len(g1.processes) == 1 and g1.processes[0].used_bytes == 8 * GiB
    assert g1.processes[0].name == "vllm"


def test_available_is_free_and_breakdown_adds_up(use_fake_nvml):
    two_gpu_machine(use_fake_nvml)
    g0 = probe_gpus()[0]
    assert g0.available_bytes == g0.memory_free_bytes
    assert g0.memory_total_bytes - g0.other_processes_bytes() - g0.unattributed_bytes == g0.available_bytes
    assert g0.other_processes_bytes(exclude_pids=[ME]) == 1 * GiB
    assert g0.available_if_exited([ME]) == g0.memory_free_bytes + 2 * GiB
    assert g0.available_if_exited([]) == g0.memory_free_bytes


def test_not_supported_fields_are_listed_and_the_rest_filled(use_fake_nvml):
    use_fake_nvml(rtx4090(not_supported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature",
                                         "nvmlDeviceGetMemoryBusWidth", "nvmlDeviceGetUtilizationRates"},
                          reserved=None))
    (g,) = probe_gpus()
    assert g.ok
    assert set(g.unsupported) == {"power_draw_w", "temperature_c", "memory_bus_width_bits",
                                  "utilization_gpu_pct", "utilization_memory_pct", "mig_mode",
                                  "memory_reserved_bytes"}
    assert g.power_draw_w is None and g.temperature_c is None and g.memory_bus_width_bits is None
    assert g.bandwidth_bytes_per_s is None
    assert g.memory_total_bytes == 24564 * MiB and g.memory_free_bytes == 20 * GiB
    assert g.name and g.compute_capability == "8.9" and g.power_limit_w == 450.0
    assert any("nvmlDeviceGetPowerUsage" in n for n in g.notes)


def test_no_permission_for_processes(use_fake_nvml):
    use_fake_nvml(rtx4090(no_permission={"nvmlDeviceGetComputeRunningProcesses",
                                         "nvmlDeviceGetComputeRunningProcesses_v2",
                                         "nvmlDeviceGetGraphicsRunningProcesses",
                                         "nvmlDeviceGetGraphicsRunningProcesses_v2"}))
    (g,) = probe_gpus()
    assert g.ok and g.processes == [] and "processes" in g.unsupported
    assert g.memory_used_bytes == g.unattributed_bytes  # nobody to attribute it to
    assert g.memory_free_bytes == 20 * GiB


def test_old_driver_falls_back_to_v2_process_calls(use_fake_nvml):
    use_fake_nvml(rtx4090(compute=[FakeProcess(ME, GiB)]),
                  mismatch={"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"})
    (g,) = probe_gpus()
    assert [p.pid for p in g.processes] == [ME] and "processes" not in g.unsupported


def test_wddm_process_without_size(use_fake_nvml):
    use_fake_nvml(rtx4090(compute=[FakeProcess(ME, None)], graphics=[FakeProcess(ME, None)]))
    (g,) = probe_gpus()
    assert g.processes[0].used_bytes is None
    assert g.processes_bytes == 0 and g.other_processes_bytes() == 0


def test_gpu_lost_mid_probe_becomes_an_error_entry(use_fake_nvml):
    fake = use_fake_nvml(rtx4090(), h100())
    original = fake.nvmlDeviceGetMemoryInfo

    def lose_gpu1(h, version=None):
        if h.index == 1:
            fake.gpus[1].lost = True
        return original(h, version)

    fake.nvmlDeviceGetMemoryInfo = lose_gpu1
    g0, g1 = probe_gpus()
    assert g0.ok and g0.memory_total_bytes
    assert not g1.ok and g1.error_status == "gpu_lost"
    assert "lost" in g1.error
    assert g1.name == "NVIDIA H100 80GB HBM3"  # what was read before it fell off the bus


def test_unexpected_exception_in_a_probe_is_contained(use_fake_nvml):
    fake = use_fake_nvml(rtx4090(), rtx4090())

    def boom(h):
        if h.index == 0:
            raise RuntimeError("driver returned garbage")
        return "ok"

    fake.nvmlDeviceGetUUID = boom
    g0, g1 = probe_gpus()
    assert g0.error == "RuntimeError: driver returned garbage" and g0.error_status is None
    assert g1.ok


def test_turing_has_no_bf16(use_fake_nvml):
    use_fake_nvml(rtx4090(name="Tesla T4", cc=(7, 5)))
    assert probe_gpus()[0].bf16 is False


@pytest.mark.parametrize("value, text", [(12040, "12.4"), (11080, "11.8"), (12000, "12.0"),
                                         (13000, "13.0"), (0, None), (None, None), (NA, None)])
def test_cuda_driver_version_format(value, text):
    assert format_cuda_version(value) == text


def test_gpuinfo_json_round_trip(use_fake_nvml):
    two_gpu_machine(use_fake_nvml)
    for g in probe_gpus():
        d = g.to_json()
        assert d["available_bytes"] == g.memory_free_bytes
        assert isinstance(d["bandwidth_bytes_per_s"], int)
        back = GpuInfo.from_json(d)
        assert back == g
        assert back.to_json() == d


def test_gpuinfo_from_json_tolerates_unknown_and_missing_keys():
    g = GpuInfo.from_json({"index": 3, "name": "X", "future_field": 1,
                           "processes": [{"pid": 5, "used_bytes": 10}]})
    assert g.index == 3 and g.memory_total_bytes is None
    assert g.processes == [GpuProcess(pid=5, used_bytes=10)]
    assert g.available_bytes is None and g.unattributed_bytes is None
