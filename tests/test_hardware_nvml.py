"""The NVML door: lazy thread-safe init, failure classification, soft vs hard errors."""

from __future__ import annotations

import threading

import pytest

from cardfit.core.errors import HardwareError
from cardfit.core.hardware import nvml
from cardfit.core.hardware.gpu import probe_gpus
from cardfit.core.hardware.nvml import NA, NvmlError, NvmlStatus, NvmlUnavailable, nvml_query
from fakes import FakeGpu, nvml_library_present, real_nvml, use_fake_nvml  # noqa: F401
from fakes.fake_nvml import (DRIVER_NOT_LOADED, GPU_IS_LOST, LIB_RM_VERSION_MISMATCH,
                             LIBRARY_NOT_FOUND, NO_PERMISSION, UNKNOWN, FakeHandle)

no_driver_here = pytest.mark.skipif(nvml_library_present(),
                                    reason="this machine has the NVIDIA driver library")


@no_driver_here
def test_real_pynvml_without_driver_says_library_missing(real_nvml):
    st = nvml.state()
    assert st.status is NvmlStatus.LIBRARY_MISSING
    assert not st.ok
    assert "libnvidia-ml" in st.message and "nvidia-smi" in st.message
    with pytest.raises(NvmlUnavailable) as err:
        nvml_query("nvmlDeviceGetCount")
    assert err.value.status is NvmlStatus.LIBRARY_MISSING
    assert isinstance(err.value, HardwareError)
    assert probe_gpus() == []


@pytest.mark.parametrize("code, status, words", [
    (LIBRARY_NOT_FOUND, NvmlStatus.LIBRARY_MISSING, "driver"),
    (DRIVER_NOT_LOADED, NvmlStatus.DRIVER_NOT_LOADED, "modprobe"),
    (LIB_RM_VERSION_MISMATCH, NvmlStatus.DRIVER_MISMATCH, "Reboot"),
    (NO_PERMISSION, NvmlStatus.NO_PERMISSION, "/dev/nvidia"),
    (GPU_IS_LOST, NvmlStatus.GPU_LOST, "reset"),
    (UNKNOWN, NvmlStatus.UNKNOWN, "nvidia-smi"),
])
def test_init_failures_are_classified_with_advice(use_fake_nvml, code, status, words):
    use_fake_nvml(FakeGpu(), init_error=code)
    st = nvml.state()
    assert st.status is status
    assert not st.ok
    assert words in st.message
    assert st.to_json() == {"status": status.value, "message": st.message}
    assert probe_gpus() == []  # no exception either


def test_no_gpu_is_a_working_nvml_with_zero_devices(use_fake_nvml):
    use_fake_nvml()
    st = nvml.state()
    assert st.status is NvmlStatus.NO_GPU and st.ok and st.device_count == 0
    assert "--gpus all" in st.message
    assert probe_gpus() == []


def test_wrong_pynvml_module_is_reported(use_fake_nvml):
    use_fake_nvml(FakeGpu(), missing={"nvmlInit"})
    st = nvml.state()
    assert st.status is NvmlStatus.LIBRARY_MISSING
    assert "nvidia-ml-py" in st.message


def test_init_is_lazy_and_happens_once_across_threads(use_fake_nvml):
    fake = use_fake_nvml(FakeGpu(), FakeGpu(), init_delay=0.05)
    assert fake.init_calls == 0  # set_backend does not initialise
    barrier = threading.Barrier(16)
    seen = []

    def worker():
        barrier.wait()
        seen.append(nvml.state())

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.init_calls == 1
    assert len(seen) == 16 and all(s is seen[0] for s in seen)
    assert seen[0].status is NvmlStatus.OK and seen[0].device_count == 2


def test_reset_tries_again(use_fake_nvml):
    fake = use_fake_nvml(FakeGpu(), init_error=NO_PERMISSION)
    assert nvml.state().status is NvmlStatus.NO_PERMISSION
    fake.init_error = None  # the user fixed the permission
    assert nvml.state().status is NvmlStatus.NO_PERMISSION  # remembered until reset
    nvml.reset()
    assert nvml.state().status is NvmlStatus.OK
    assert fake.init_calls == 2


def test_not_supported_reads_na_and_notes_why(use_fake_nvml):
    use_fake_nvml(FakeGpu(not_supported={"nvmlDeviceGetPowerUsage"}))
    h = nvml_query("nvmlDeviceGetHandleByIndex", 0)
    notes: list[str] = []
    assert nvml_query("nvmlDeviceGetPowerUsage", h, notes=notes) is NA
    assert nvml_query("nvmlDeviceGetPowerUsage", h, default=None) is None
    assert notes and "nvmlDeviceGetPowerUsage" in notes[0] and "Not Supported" in notes[0]
    assert nvml_query("nvmlDeviceGetTemperature", h, 0) == 41  # the rest still answers


def test_no_permission_on_one_field_is_soft(use_fake_nvml):
    use_fake_nvml(FakeGpu(no_permission={"nvmlDeviceGetComputeRunningProcesses"}))
    h = nvml_query("nvmlDeviceGetHandleByIndex", 0)
    assert nvml_query("nvmlDeviceGetComputeRunningProcesses", h) is NA


def test_missing_function_and_binding_mismatch_read_na(use_fake_nvml):
    use_fake_nvml(FakeGpu(), missing={"nvmlDeviceGetMemoryBusWidth"},
              mismatch={"nvmlDeviceGetComputeRunningProcesses"})
    h = nvml_query("nvmlDeviceGetHandleByIndex", 0)
    notes: list[str] = []
    assert nvml_query("nvmlDeviceGetMemoryBusWidth", h, notes=notes) is NA
    assert nvml_query("nvmlDeviceGetComputeRunningProcesses", h, notes=notes) is NA
    assert len(notes) == 2
    assert nvml_query("nvmlDeviceGetComputeRunningProcesses_v2", h) == []


def test_gpu_lost_raises_with_status(use_fake_nvml):
    fake = use_fake_nvml(FakeGpu())
    h = nvml_query("nvmlDeviceGetHandleByIndex", 0)
    fake.gpus[0].lost = True
    with pytest.raises(NvmlError) as err:
        nvml_query("nvmlDeviceGetMemoryInfo", h)
    assert err.value.status is NvmlStatus.GPU_LOST
    assert err.value.function == "nvmlDeviceGetMemoryInfo"
    assert "nvidia-smi -r" in str(err.value)
    assert err.value.to_json()["status"] == "gpu_lost"


def test_bytes_are_decoded_and_callables_work(use_fake_nvml):
    fake = use_fake_nvml(FakeGpu(name=b"NVIDIA GeForce RTX 4090"))
    assert nvml_query("nvmlSystemGetDriverVersion") == "550.54.15"
    assert nvml_query(fake.nvmlDeviceGetName, FakeHandle(0)) == "NVIDIA GeForce RTX 4090"
    assert nvml_query(lambda: b"\xffx") == "\ufffdx"


def test_non_nvml_exceptions_are_not_swallowed(use_fake_nvml):
    use_fake_nvml(FakeGpu())

    def broken():
        raise RuntimeError("a bug of ours")

    with pytest.raises(RuntimeError):
        nvml_query(broken)


def test_na_is_a_falsy_singleton():
    import copy
    import pickle

    assert not NA
    assert str(NA) == "N/A"
    assert copy.deepcopy(NA) is NA and pickle.loads(pickle.dumps(NA)) is NA
    assert nvml.is_na(NA) and not nvml.is_na(None) and not nvml.is_na(0)
