"""NVML faults, injected through the fake (tests/fakes/fake_nvml.py), seen end to end:
``probe_machine()`` / ``MachineInfo`` JSON, ``cardfit detect`` (text and --json) and the
``MemorySampler``. Each fault is shown as such (a status and a message saying what to do),
everything that still works is still filled (nvitop's per-field rule), nothing raises out
of a probe, and the sampler stops cleanly with the error kept."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from cardfit.cli import main
from cardfit.core.errors import HardwareError
from cardfit.core.hardware import nvml
from cardfit.core.hardware.machine import MachineInfo, probe_machine
from cardfit.core.hardware.nvml import NvmlError, NvmlUnavailable
from cardfit.core.hardware.sampler import MemorySampler
from fakes import FakeGpu, h100, rtx4090, use_fake_nvml  # noqa: F401
from fakes.fake_nvml import (
    DRIVER_NOT_LOADED, GPU_IS_LOST, LIB_RM_VERSION_MISMATCH, LIBRARY_NOT_FOUND, NO_PERMISSION,
    UNKNOWN,
)

HANG_GUARD_S = 20.0


def detect(*flags: str, capsys) -> tuple[int, str, str]:
    code = main(["detect", *flags])
    out, err = capsys.readouterr()
    return code, out, err


def wait_for(predicate, limit=HANG_GUARD_S):
    end = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < end, "condition not reached (hang guard)"
        time.sleep(0.005)


@pytest.fixture
def thread_errors(monkeypatch):
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


# -- the library or the driver is not there -------------------------------------------------

@pytest.mark.parametrize("code,status,words", [
    (LIBRARY_NOT_FOUND, "library_missing", "driver library"),
    (DRIVER_NOT_LOADED, "driver_not_loaded", "modprobe"),
    (LIB_RM_VERSION_MISMATCH, "driver_mismatch", "Reboot"),
    (NO_PERMISSION, "no_permission", "/dev/nvidia"),
    (UNKNOWN, "unknown", "nvidia-smi"),
])
def test_init_failures_show_as_such_everywhere(use_fake_nvml, capsys, code, status, words):
    use_fake_nvml(rtx4090(), init_error=code)
    m = probe_machine()
    assert m.nvml_status == status and words in m.nvml_message and m.gpus == []
    assert m.host.ram_total_bytes and m.host.cpu_cores_logical  # the rest of the panel: filled
    assert MachineInfo.from_json(m.dumps()).nvml_status == status

    rc, out, err = detect(capsys=capsys)
    assert rc == 0 and err == ""
    first = out.splitlines()[0]
    assert first.startswith("No NVIDIA GPU: ") and first.endswith(f"[{status}]") and words in first
    assert "RAM " in out and "CPU " in out

    rc, out, _ = detect("--json", capsys=capsys)
    doc = json.loads(out)
    assert rc == 0 and doc["nvml"]["status"] == status and doc["gpus"] == [] and doc["host"]["ram_total_bytes"]

    with pytest.raises(NvmlUnavailable) as info:
        MemorySampler(0, 10).start()
    assert info.value.status.value == status and words in str(info.value)


def test_python_bindings_missing(monkeypatch, capsys):
    nvml.set_backend(None)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    try:
        m = probe_machine()
        assert m.nvml_status == "library_missing" and "nvidia-ml-py" in m.nvml_message
        rc, out, _ = detect(capsys=capsys)
        assert rc == 0 and "[library_missing]" in out and "nvidia-ml-py" in out
        with pytest.raises(NvmlUnavailable, match="nvidia-ml-py"):
            MemorySampler(0, 10).start()
    finally:
        nvml.set_backend(None)


def test_init_fails_with_a_non_nvml_exception(use_fake_nvml):
    fake = use_fake_nvml(rtx4090())

    def broken():
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    fake.nvmlInit = broken
    m = probe_machine()
    assert m.nvml_status == "library_missing" and m.gpus == []


def test_device_count_fails_after_init(use_fake_nvml):
    fake = use_fake_nvml(rtx4090())

    def count():
        fake._raise(GPU_IS_LOST)

    fake.nvmlDeviceGetCount = count
    m = probe_machine()
    assert m.nvml_status == "gpu_lost" and "nvidia-smi -r" in m.nvml_message and m.gpus == []


# -- one field NVML cannot give: that field only ---------------------------------------------

FIELDS = {  # NVML function -> the GpuInfo fields it alone fills
    "nvmlDeviceGetName": {"name"},
    "nvmlDeviceGetUUID": {"uuid"},
    "nvmlDeviceGetPciInfo": {"pci_bus_id"},
    "nvmlDeviceGetMemoryInfo": {"memory_total_bytes", "memory_used_bytes", "memory_free_bytes"},
    "nvmlDeviceGetMemoryInfo_v2": {"memory_reserved_bytes"},
    "nvmlDeviceGetCudaComputeCapability": {"compute_capability"},
    "nvmlDeviceGetMemoryBusWidth": {"memory_bus_width_bits"},
    "nvmlDeviceGetMaxClockInfo": {"memory_clock_max_mhz"},
    "nvmlDeviceGetPowerUsage": {"power_draw_w"},
    "nvmlDeviceGetTemperature": {"temperature_c"},
    "nvmlDeviceGetUtilizationRates": {"utilization_gpu_pct", "utilization_memory_pct"},
    "nvmlDeviceGetMigMode": {"mig_mode"},
}
SCALARS = sorted(set().union(*FIELDS.values()))


def baseline(use_fake_nvml):
    use_fake_nvml(h100())
    (g,) = probe_machine().gpus
    assert g.ok and g.unsupported == [] and all(getattr(g, a) is not None for a in SCALARS)
    return g


@pytest.mark.parametrize("how", ["not_supported", "no_permission", "mismatch", "missing"])
@pytest.mark.parametrize("fn", sorted(FIELDS))
def test_one_field_unavailable_hides_nothing_else(use_fake_nvml, capsys, fn, how):
    good = baseline(use_fake_nvml)
    gpu = h100()
    kw = {}
    if how == "not_supported":
        gpu.not_supported.add(fn)
    elif how == "no_permission":
        gpu.no_permission.add(fn)
    elif how == "mismatch":
        kw["mismatch"] = {fn}
    else:
        if fn.endswith("_v2"):
            pytest.skip("the v2 memory call is the same function with a version argument")
        kw["missing"] = {fn}
    use_fake_nvml(gpu, **kw)
    m = probe_machine()
    (g,) = m.gpus
    assert g.ok, g.error
    gone = set(FIELDS[fn])
    if how == "missing" and fn == "nvmlDeviceGetMemoryInfo":  # the v2 query is the same function
        gone |= FIELDS["nvmlDeviceGetMemoryInfo_v2"]
    assert set(g.unsupported) == gone
    for attr in SCALARS:
        if attr in gone:
            assert getattr(g, attr) is None
        else:
            assert getattr(g, attr) == getattr(good, attr), attr
    assert g.notes  # the reason is kept for a bug report
    doc = json.loads(m.dumps())
    assert set(doc["gpus"][0]["unsupported"]) == gone
    rc, out, _ = detect(capsys=capsys)
    assert rc == 0 and "GPU 0  " in out and "error:" not in out
    if "memory_total_bytes" in gone:
        assert "memory  not reported by NVML" in out
    else:
        assert "memory  [" in out


def test_every_field_unsupported_still_gives_a_gpu_entry(use_fake_nvml, capsys):
    gpu = rtx4090(not_supported=set(FIELDS) | {
        "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit",
        "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2",
        "nvmlDeviceGetGraphicsRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses_v2"})
    use_fake_nvml(gpu)
    (g,) = probe_machine().gpus
    assert g.ok and "processes" in g.unsupported and "power_limit_w" in g.unsupported
    rc, out, _ = detect(capsys=capsys)
    assert rc == 0 and "GPU 0  unknown NVIDIA GPU" in out and "memory  not reported by NVML" in out


# -- a GPU lost mid-session -------------------------------------------------------------------

@pytest.mark.parametrize("after", [0, 1, 3, 6, 9, 12])
def test_gpu_lost_at_any_call_of_a_probe(use_fake_nvml, capsys, after):
    # GPU 1 falls off the bus after `after` calls; GPU 0 is probed in full all the same.
    use_fake_nvml(rtx4090(), h100(fail_after_calls=after))
    m = probe_machine()
    g0, g1 = m.gpus
    assert g0.ok and g0.memory_total_bytes and g0.name
    assert not g1.ok and g1.error_status == "gpu_lost" and "nvidia-smi -r" in g1.error
    rc, out, _ = detect(capsys=capsys)
    assert rc == 0 and "GPU 0  NVIDIA GeForce RTX 4090" in out and "  error: " in out
    rc, out, _ = detect("--json", capsys=capsys)
    doc = json.loads(out)
    assert doc["gpus"][1]["error_status"] == "gpu_lost" and doc["gpus"][0]["error"] is None
    back = MachineInfo.from_json(out)
    assert [g.ok for g in back.gpus] == [True, False]


def test_gpu_lost_between_two_probes(use_fake_nvml, capsys):
    fake = use_fake_nvml(h100())
    assert probe_machine().gpus[0].ok
    fake.gpus[0].lost = True  # a refresh later: the GPU is gone
    (g,) = probe_machine().gpus
    assert g.error_status == "gpu_lost"


def test_driver_unloaded_mid_probe(use_fake_nvml):
    use_fake_nvml(h100(fail_after_calls=4, fail_code=DRIVER_NOT_LOADED))
    (g,) = probe_machine().gpus
    assert g.error_status == "driver_not_loaded" and "modprobe" in g.error


def test_unexpected_exception_mid_probe_is_contained(use_fake_nvml):
    fake = use_fake_nvml(rtx4090(), h100())
    real = fake.nvmlDeviceGetTemperature

    def flaky(h, sensor):
        if h.index == 0:
            raise RuntimeError("binding bug")
        return real(h, sensor)

    fake.nvmlDeviceGetTemperature = flaky
    g0, g1 = probe_machine().gpus
    assert "RuntimeError: binding bug" in g0.error and g0.error_status is None
    assert g1.ok and g1.temperature_c == 33


# -- the sampler --------------------------------------------------------------------------------

@pytest.mark.parametrize("code,status", [(GPU_IS_LOST, "gpu_lost"), (DRIVER_NOT_LOADED, "driver_not_loaded"),
                                         (UNKNOWN, "unknown")])
def test_sampler_stops_cleanly_when_the_gpu_fails_mid_run(use_fake_nvml, thread_errors, code, status):
    use_fake_nvml(h100(fail_after_calls=5, fail_code=code))
    seen = []
    s = MemorySampler(0, hz=50, callback=seen.append).start()
    assert s.wait(HANG_GUARD_S), "sampler did not stop by itself"
    assert not s.running
    assert s.error_status == status and s.error
    assert s.count == 5 and len(s.samples()) == 5 and len(seen) == 5  # what it had is kept
    assert s.peak_used_bytes() == max(x.used_bytes for x in s.samples())
    s.stop()  # stopping a stopped sampler is harmless
    assert thread_errors == []


def test_sampler_stops_when_memory_becomes_unsupported(use_fake_nvml, thread_errors):
    fake = use_fake_nvml(h100())
    s = MemorySampler(0, hz=50).start()
    wait_for(lambda: s.count >= 2)
    fake.gpus[0].not_supported.add("nvmlDeviceGetMemoryInfo")
    assert s.wait(HANG_GUARD_S)
    assert "does not report memory" in s.error and s.error_status is None
    assert s.count >= 2 and thread_errors == []


def test_sampler_contains_a_non_nvml_exception(use_fake_nvml, thread_errors):
    fake = use_fake_nvml(h100())
    calls = []

    def broken(h, version=None):
        calls.append(1)
        raise MemoryError("out of memory in the binding")

    fake.nvmlDeviceGetMemoryInfo = broken
    s = MemorySampler(0, hz=50).start()
    assert s.wait(HANG_GUARD_S)
    assert s.error.startswith("MemoryError") and s.samples() == [] and thread_errors == []


def test_sampler_on_a_gpu_already_lost_refuses_to_start(use_fake_nvml):
    use_fake_nvml(h100(lost=True))
    with pytest.raises(NvmlError) as info:
        MemorySampler(0, 10).start()
    assert isinstance(info.value, HardwareError) and info.value.status.value == "gpu_lost"


def test_sampler_stop_during_a_failing_driver_call(use_fake_nvml, thread_errors):
    fake = use_fake_nvml(h100())
    entered = threading.Event()
    release = threading.Event()
    real = fake.nvmlDeviceGetMemoryInfo

    def slow_then_lost(h, version=None):
        if fake.gpus[0].memory_reads >= 1:
            entered.set()
            release.wait(HANG_GUARD_S)
            fake._raise(GPU_IS_LOST)
        return real(h, version)

    fake.nvmlDeviceGetMemoryInfo = slow_then_lost
    s = MemorySampler(0, hz=50).start()
    assert entered.wait(HANG_GUARD_S)
    s.stop(timeout=0.05)  # the thread is inside the driver: stop() returns, does not hang
    release.set()
    assert s.wait(HANG_GUARD_S) and not s.running
    assert s.error_status == "gpu_lost" and s.count == 1 and thread_errors == []
