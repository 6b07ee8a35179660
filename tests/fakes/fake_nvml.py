"""A stand-in for the ``pynvml`` module (nvidia-ml-py), for machines without an NVIDIA GPU.

``FakeNvml`` implements the pynvml functions cardfit calls, over a list of ``FakeGpu``
descriptions, and raises the real ``pynvml`` error classes (importable without the driver
library) so error handling is exercised as on a real machine. Install it with
``cardfit.core.hardware.nvml.set_backend(FakeNvml([...]))``.

Knobs per GPU: ``not_supported`` / ``no_permission`` (function names that fail that way),
``lost`` (every call fails with "GPU is lost"), ``lose_after_memory_reads`` (the GPU falls
off the bus after that many memory reads: a GPU lost mid-session), ``fail_after_calls`` /
``fail_code`` (after that many calls of any kind, every call on the GPU fails with that NVML
code: a driver or GPU failing mid-session at whatever call comes next), ``reserved=None`` (no
v2 memory info, as on drivers before R510). Knobs for the library: ``init_error`` (an NVML
return code nvmlInit fails with), ``missing`` (functions absent from these bindings),
``mismatch`` (functions that raise NVMLLibraryMismatchError, as pynvml's unversioned
wrappers do on an older driver).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml as _pynvml  # only its error classes and constants; loads no library

GiB = 1024**3
MiB = 1024**2

NVMLError = _pynvml.NVMLError
NVMLLibraryMismatchError = _pynvml.NVMLLibraryMismatchError

NOT_SUPPORTED = _pynvml.NVML_ERROR_NOT_SUPPORTED
NO_PERMISSION = _pynvml.NVML_ERROR_NO_PERMISSION
GPU_IS_LOST = _pynvml.NVML_ERROR_GPU_IS_LOST
INVALID_ARGUMENT = _pynvml.NVML_ERROR_INVALID_ARGUMENT
DRIVER_NOT_LOADED = _pynvml.NVML_ERROR_DRIVER_NOT_LOADED
LIB_RM_VERSION_MISMATCH = _pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH
LIBRARY_NOT_FOUND = _pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
UNKNOWN = _pynvml.NVML_ERROR_UNKNOWN


@dataclass
class FakeProcess:
    pid: int
    used: int | None  # None: the driver withholds it (WDDM)
    gpu_instance: int | None = None
    compute_instance: int | None = None

    def struct(self) -> SimpleNamespace:
        return SimpleNamespace(
            pid=self.pid, usedGpuMemory=self.used,
            gpuInstanceId=0xFFFFFFFF if self.gpu_instance is None else self.gpu_instance,
            computeInstanceId=0xFFFFFFFF if self.compute_instance is None else self.compute_instance)


@dataclass
class FakeGpu:
    name: str | bytes = "NVIDIA GeForce RTX 4090"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    pci_bus_id: bytes = b"00000000:01:00.0"
    total: int = 24564 * MiB
    free: int = 20 * GiB
    reserved: int | None = 400 * MiB
    cc: tuple[int, int] = (8, 9)
    bus_width: int = 384
    mem_clock_max: int = 10501  # MHz, as NVML reports an RTX 4090
    power_mw: int = 35_500
    limit_mw: int = 450_000
    temperature: int = 41
    util: tuple[int, int] = (3, 1)
    mig: tuple[int, int] | None = None  # None: MIG not supported
    compute: list[FakeProcess] = field(default_factory=list)
    graphics: list[FakeProcess] = field(default_factory=list)
    not_supported: set[str] = field(default_factory=set)
    no_permission: set[str] = field(default_factory=set)
    lost: bool = False
    lose_after_memory_reads: int | None = None
    used_sequence: list[int] | None = None  # successive "used" values for memory reads
    memory_reads: int = 0
    fail_after_calls: int | None = None
    fail_code: int = GPU_IS_LOST
    calls: int = 0


class FakeHandle:
    def __init__(self, index: int):
        self.index = index

    def __repr__(self) -> str:
        return f"<FakeHandle {self.index}>"


class FakeNvml:
    """Module-like: attribute lookups give pynvml-named functions."""

    NVMLError = NVMLError
    NVMLLibraryMismatchError = NVMLLibraryMismatchError
    nvmlMemory_v2 = _pynvml.nvmlMemory_v2
    NVML_CLOCK_MEM = _pynvml.NVML_CLOCK_MEM
    NVML_TEMPERATURE_GPU = _pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, gpus: list[FakeGpu] | None = None, *, driver: str | bytes = b"550.54.15",
                 cuda: int = 12040, init_error: int | None = None, missing: set[str] | None = None,
                 mismatch: set[str] | None = None, init_delay: float = 0.0,
                 process_names: dict[int, str] | None = None):
        self.gpus = list(gpus or [])
        self.driver = driver
        self.cuda = cuda
        self.init_error = init_error
        self.missing = set(missing or ())
        self.mismatch = set(mismatch or ())
        self.init_delay = init_delay
        self.process_names = dict(process_names or {})
        self.init_calls = 0
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _raise(code: int):
        raise NVMLError(code)

    def _gpu(self, handle: FakeHandle, fn: str) -> FakeGpu:
        with self._lock:
            self.calls.append(fn)
        if fn in self.mismatch:
            raise NVMLLibraryMismatchError(f"{fn}: unversioned function not in this driver")
        gpu = self.gpus[handle.index]
        with self._lock:
            n = gpu.calls
            gpu.calls += 1
        if gpu.fail_after_calls is not None and n >= gpu.fail_after_calls:
            self._raise(gpu.fail_code)
        if gpu.lost:
            self._raise(GPU_IS_LOST)
        if fn in gpu.not_supported:
            self._raise(NOT_SUPPORTED)
        if fn in gpu.no_permission:
            self._raise(NO_PERMISSION)
        return gpu

    # -- library ------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        with self._lock:
            self.init_calls += 1
        if self.init_delay:
            time.sleep(self.init_delay)  # widens the window for the thread-safety test
        if self.init_error is not None:
            self._raise(self.init_error)

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        if pid in self.process_names:
            return self.process_names[pid]
        self._raise(_pynvml.NVML_ERROR_NOT_FOUND)

    # -- devices ------------------------------------------------------------------------------

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        if not 0 <= index < len(self.gpus):
            self._raise(INVALID_ARGUMENT)
        if self.gpus[index].lost:
            self._raise(GPU_IS_LOST)
        return FakeHandle(index)

    def nvmlDeviceGetName(self, h):
        return self._gpu(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, h) -> str:
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId=self._gpu(h, "nvmlDeviceGetPciInfo").pci_bus_id)

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        gpu = self._gpu(h, "nvmlDeviceGetMemoryInfo" + ("_v2" if version else ""))
        if version:
            if gpu.reserved is None:
                self._raise(_pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            return SimpleNamespace(version=version, total=gpu.total, reserved=gpu.reserved,
                                   free=gpu.free, used=gpu.total - gpu.free - gpu.reserved)
        with self._lock:
            n = gpu.memory_reads
            gpu.memory_reads += 1
        if gpu.lose_after_memory_reads is not None and n >= gpu.lose_after_memory_reads:
            gpu.lost = True
            self._raise(GPU_IS_LOST)
        free = gpu.free
        if gpu.used_sequence:
            free = gpu.total - gpu.used_sequence[min(n, len(gpu.used_sequence) - 1)]
        return SimpleNamespace(total=gpu.total, free=free, used=gpu.total - free)

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self._gpu(h, "nvmlDeviceGetCudaComputeCapability").cc

    def nvmlDeviceGetMemoryBusWidth(self, h) -> int:
        return self._gpu(h, "nvmlDeviceGetMemoryBusWidth").bus_width

    def nvmlDeviceGetMaxClockInfo(self, h, clock_type: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetMaxClockInfo")
        if clock_type != _pynvml.NVML_CLOCK_MEM:
            return 2520
        return gpu.mem_clock_max

    def nvmlDeviceGetPowerUsage(self, h) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h) -> int:
        return self._gpu(h, "nvmlDeviceGetEnforcedPowerLimit").limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, h) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerManagementLimit").limit_mw

    def nvmlDeviceGetTemperature(self, h, sensor: int) -> int:
        return self._gpu(h, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetUtilizationRates(self, h):
        gpu = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.util[0], memory=gpu.util[1])

    def nvmlDeviceGetMigMode(self, h):
        gpu = self._gpu(h, "nvmlDeviceGetMigMode")
        if gpu.mig is None:
            self._raise(NOT_SUPPORTED)
        return list(gpu.mig)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [p.struct() for p in self._gpu(h, "nvmlDeviceGetComputeRunningProcesses").compute]

    def nvmlDeviceGetComputeRunningProcesses_v2(self, h):
        return [p.struct() for p in self._gpu(h, "nvmlDeviceGetComputeRunningProcesses_v2").compute]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return [p.struct() for p in self._gpu(h, "nvmlDeviceGetGraphicsRunningProcesses").graphics]

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, h):
        return [p.struct() for p in self._gpu(h, "nvmlDeviceGetGraphicsRunningProcesses_v2").graphics]


# -- ready-made machines ---------------------------------------------------------------------

def rtx4090(**kw) -> FakeGpu:
    return FakeGpu(**kw)


def h100(**kw) -> FakeGpu:
    """An H100 SXM5 as NVML reports it (total from tests/data/gpu_measure_h100_part1.jsonl)."""
    base = dict(name="NVIDIA H100 80GB HBM3", uuid="GPU-11111111-2222-3333-4444-555555555555",
                pci_bus_id=b"00000000:19:00.0", total=85_520_809_984, free=85_520_809_984 - 480 * MiB,
                reserved=480 * MiB, cc=(9, 0), bus_width=5120, mem_clock_max=2619,
                power_mw=72_000, limit_mw=700_000, temperature=33, util=(0, 0), mig=(0, 0))
    base.update(kw)
    return FakeGpu(**base)
