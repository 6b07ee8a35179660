"""What NVML says about each NVIDIA GPU of this machine: ``GpuInfo`` and ``probe_gpus()``.

Memory, and which figure a fit is judged against
------------------------------------------------
NVML gives ``total``, ``free`` and ``used`` (= total - free) for the whole device, and per
process the bytes each one holds. What a *new* process (the user's job) can allocate is
``free``: everything else is held by someone. cardfit therefore judges fits against

    available_bytes = memory_free_bytes

and explains who holds the rest:

    used = processes_bytes     (processes NVML lists, with their sizes)
         + unattributed_bytes  (the driver's own reservation, ``memory_reserved_bytes``
                                when the driver reports it, plus processes NVML cannot
                                show us: other containers or VMs, or sizes the driver
                                withholds, as under Windows WDDM)

(``total - other processes - unattributed`` is the same number as ``free``; free is read
directly, so it stays right even when the process list is incomplete.) The new process will
itself spend a CUDA context (a few hundred MiB) out of ``free``: that is part of the
estimate, not of the card.

Bandwidth
---------
Peak memory bandwidth is derived as ``2 * max memory clock * bus width / 8`` bytes/s from
nvmlDeviceGetMaxClockInfo(NVML_CLOCK_MEM) (MHz) and nvmlDeviceGetMemoryBusWidth (bits)
(NVML API reference, Device Queries: https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html).
The factor 2 is double data rate: NVML reports the memory clock at half the transfer
rate. Cross-check against datasheets: H100 SXM5 reports 2619 MHz x 5120 bit -> 3.35 TB/s
(datasheet 3.35 TB/s); RTX 4090 reports 10501 MHz x 384 bit -> 1008 GB/s (spec 1008 GB/s).

GPU indices are NVML's (the order of nvidia-smi, PCI bus order). CUDA numbers devices
fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and CUDA_VISIBLE_DEVICES does not apply
to NVML.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Iterable

from cardfit.core.hardware import nvml
from cardfit.core.hardware.nvml import NA, NvmlError, is_na

__all__ = ["GpuProcess", "GpuInfo", "probe_gpus", "probe_gpu", "format_cuda_version",
           "system_versions"]

# NVML constants, spelled out so the stand-in in tests need not define them (nvml.h).
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_MEMORY_V2 = 0x02000028  # nvmlMemory_v2: sizeof(nvmlMemory_v2_t) | 2 << 24
_ULL_NOT_AVAILABLE = 2**64 - 1  # NVML_VALUE_NOT_AVAILABLE for unsigned long long


@dataclass
class GpuProcess:
    """A process holding memory on a GPU. ``used_bytes`` is None when the driver does not
    say (Windows WDDM, or not allowed); ``kind`` is "compute", "graphics" or both."""

    pid: int
    name: str | None = None
    used_bytes: int | None = None
    kind: str = "compute"

    def to_json(self) -> dict:
        return {"pid": self.pid, "name": self.name, "used_bytes": self.used_bytes,
                "kind": self.kind}

    @classmethod
    def from_json(cls, d: dict) -> "GpuProcess":
        used = d.get("used_bytes")
        return cls(pid=int(d["pid"]), name=d.get("name"),
                   used_bytes=None if used is None else int(used), kind=d.get("kind", "compute"))


@dataclass
class GpuInfo:
    """One GPU as NVML sees it. A field NVML could not read is None and its name is in
    ``unsupported``; a GPU that failed while being probed has ``error`` set."""

    index: int
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    memory_reserved_bytes: int | None = None  # driver/firmware reservation (NVML v2 info)
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # highest CUDA the driver supports, "12.4"
    compute_capability: str | None = None  # "9.0"
    memory_bus_width_bits: int | None = None
    memory_clock_max_mhz: int | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    temperature_c: int | None = None
    utilization_gpu_pct: int | None = None
    utilization_memory_pct: int | None = None
    mig_mode: bool | None = None
    processes: list[GpuProcess] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # NVML's reasons, for a bug report
    error: str | None = None
    error_status: str | None = None  # an NvmlStatus value when ``error`` came from NVML

    # -- derived figures ------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def available_bytes(self) -> int | None:
        """What a new process can allocate: NVML's free (see the module docstring)."""
        return self.memory_free_bytes

    @property
    def processes_bytes(self) -> int:
        """Memory held by the processes NVML lists (those with a known size)."""
        return sum(p.used_bytes for p in self.processes if p.used_bytes is not None)

    @property
    def unattributed_bytes(self) -> int | None:
        """Used memory no listed process accounts for: the driver's reservation plus
        processes NVML cannot show (other containers/VMs, sizes withheld)."""
        if self.memory_used_bytes is None:
            return None
        return max(0, self.memory_used_bytes - self.processes_bytes)

    def other_processes_bytes(self, exclude_pids: Iterable[int] = ()) -> int:
        """Memory held by listed processes other than ``exclude_pids`` (e.g. our own)."""
        skip = set(exclude_pids)
        return sum(p.used_bytes for p in self.processes
                   if p.used_bytes is not None and p.pid not in skip)

    def available_if_exited(self, pids: Iterable[int]) -> int | None:
        """Free memory once the processes ``pids`` exit ("what if I close my notebook")."""
        if self.memory_free_bytes is None:
            return None
        want = set(pids)
        return self.memory_free_bytes + sum(
            p.used_bytes for p in self.processes if p.used_bytes is not None and p.pid in want)

    @property
    def bandwidth_bytes_per_s(self) -> float | None:
        """Peak memory bandwidth, 2 * clock * bus width / 8 (see the module docstring)."""
        if not self.memory_clock_max_mhz or not self.memory_bus_width_bits:
            return None
        return 2.0 * self.memory_clock_max_mhz * 1e6 * self.memory_bus_width_bits / 8.0

    @property
    def bf16(self) -> bool | None:
        """Native bfloat16 needs compute capability 8.0+ (Ampere; CUDA C++ Programming
        Guide, bfloat16 arithmetic is supported from sm_80)."""
        cc = _cc_tuple(self.compute_capability)
        return None if cc is None else cc >= (8, 0)

    # -- JSON -------------------------------------------------------------------------------

    _DERIVED = ("available_bytes", "processes_bytes", "unattributed_bytes",
                "bandwidth_bytes_per_s", "bf16")

    def to_json(self) -> dict:
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "processes":
                value = [p.to_json() for p in value]
            elif isinstance(value, list):
                value = list(value)
            d[f.name] = value
        # Derived figures, written for readers of the JSON; recomputed when read back.
        d["available_bytes"] = self.available_bytes
        d["processes_bytes"] = self.processes_bytes
        d["unattributed_bytes"] = self.unattributed_bytes
        bw = self.bandwidth_bytes_per_s
        d["bandwidth_bytes_per_s"] = None if bw is None else int(bw)
        d["bf16"] = self.bf16
        return d

    @classmethod
    def from_json(cls, d: dict) -> "GpuInfo":
        """Reads ``to_json`` output; unknown keys are ignored, missing ones left None."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs["processes"] = [GpuProcess.from_json(p) for p in d.get("processes") or []]
        for key in ("unsupported", "notes"):
            kwargs[key] = list(d.get(key) or [])
        kwargs["index"] = int(d.get("index", 0))
        return cls(**kwargs)

    def label(self) -> str:
        return f"GPU {self.index}: {self.name or 'unknown NVIDIA GPU'}"


def _cc_tuple(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        major, _, minor = str(text).partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        return None


def format_cuda_version(value: Any) -> str | None:
    """NVML's CUDA driver version integer as text: 12040 -> "12.4" (nvml.h:
    NVML_CUDA_DRIVER_VERSION_MAJOR(v) = v / 1000, MINOR(v) = (v % 1000) / 10)."""
    if value is None or is_na(value):
        return None
    try:
        v = int(value)
    except (TypeError, ValueError):
        return None
    if v <= 0:
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


def system_versions() -> tuple[str | None, str | None]:
    """(driver version "550.54.15", CUDA driver version "12.4"); None where NVML cannot say.
    Raises ``NvmlUnavailable`` when NVML is not usable."""
    driver = nvml.nvml_query("nvmlSystemGetDriverVersion")
    cuda = nvml.nvml_query("nvmlSystemGetCudaDriverVersion")
    if is_na(cuda):
        cuda = nvml.nvml_query("nvmlSystemGetCudaDriverVersion_v2")
    return (None if is_na(driver) else str(driver)), format_cuda_version(cuda)


def _val(value: Any) -> Any:
    return None if is_na(value) else value


def _process_name(pid: int) -> str | None:
    """The process name, from psutil, else from NVML. In a container without the host's
    PID namespace NVML reports host PIDs, which may not exist (or be another process)
    here; the name is then None (or, rarely, wrong)."""
    try:
        import psutil  # noqa: PLC0415 - optional at run time

        return psutil.Process(pid).name()
    except Exception:  # noqa: BLE001 - psutil missing, NoSuchProcess, AccessDenied
        pass
    name = nvml.nvml_query("nvmlSystemGetProcessName", pid, default=None)
    if isinstance(name, str) and name:
        return name.rsplit("/", 1)[-1]
    return None


def _running_processes(handle: Any, kind: str, notes: list[str]) -> list | None:
    """NVML's process list of one kind, falling back to older function versions; None when
    none of them works on this driver."""
    base = f"nvmlDeviceGet{kind}RunningProcesses"
    for fn in (base, base + "_v2"):
        out = nvml.nvml_query(fn, handle, notes=notes)
        if not is_na(out):
            return list(out or [])
    return None


def _collect_processes(handle: Any, notes: list[str]) -> list[GpuProcess] | None:
    """Compute and graphics processes, deduplicated by pid.

    Within one list a pid may appear once per MIG instance: those sizes add up. A process
    in both lists (CUDA + OpenGL) is one allocation reported twice: the larger is kept."""
    merged: dict[int, GpuProcess] = {}
    any_list = False
    for kind in ("Compute", "Graphics"):
        entries = _running_processes(handle, kind, notes)
        if entries is None:
            continue
        any_list = True
        this: dict[int, int | None] = {}
        seen: set[tuple] = set()
        for e in entries:
            pid = int(getattr(e, "pid"))
            key = (pid, getattr(e, "gpuInstanceId", None), getattr(e, "computeInstanceId", None))
            if key in seen:
                continue
            seen.add(key)
            used = getattr(e, "usedGpuMemory", None)
            if used is not None and (is_na(used) or int(used) >= _ULL_NOT_AVAILABLE):
                used = None
            if pid in this:
                prev = this[pid]
                this[pid] = None if (prev is None and used is None) else (prev or 0) + (used or 0)
            else:
                this[pid] = None if used is None else int(used)
        for pid, used in this.items():
            label = kind.lower()
            if pid in merged:
                p = merged[pid]
                if label not in p.kind.split("+"):
                    p.kind = f"{p.kind}+{label}"
                if used is not None and (p.used_bytes is None or used > p.used_bytes):
                    p.used_bytes = used
            else:
                merged[pid] = GpuProcess(pid=pid, used_bytes=used, kind=label)
    if not any_list:
        return None
    for p in merged.values():
        p.name = _process_name(p.pid)
    return sorted(merged.values(), key=lambda p: (-(p.used_bytes or 0), p.pid))


def probe_gpu(index: int, driver: str | None = None, cuda: str | None = None) -> GpuInfo:
    """Read one GPU. NVML errors that concern the whole GPU (lost, driver gone) become
    ``error``; a field the GPU does not support becomes None and goes to ``unsupported``."""
    info = GpuInfo(index=index, driver_version=driver, cuda_driver_version=cuda)
    try:
        _fill(info)
    except NvmlError as exc:
        info.error = str(exc)
        info.error_status = exc.status.value
    except Exception as exc:  # noqa: BLE001 - a probe never raises; the message says what
        info.error = f"{type(exc).__name__}: {exc}"
    return info


def _fill(info: GpuInfo) -> None:
    notes = info.notes
    missing = info.unsupported
    q = nvml.nvml_query

    handle = q("nvmlDeviceGetHandleByIndex", info.index, notes=notes)
    if is_na(handle):
        raise NvmlError(nvml.NvmlStatus.UNKNOWN,
                        f"GPU {info.index}: NVML gives no handle for it ({'; '.join(notes)})")

    def put(attr: str, value: Any, convert=lambda v: v) -> None:
        if is_na(value) or value is None:
            setattr(info, attr, None)
            if attr not in missing:
                missing.append(attr)
        else:
            setattr(info, attr, convert(value))

    put("name", q("nvmlDeviceGetName", handle, notes=notes), str)
    put("uuid", q("nvmlDeviceGetUUID", handle, notes=notes), str)
    pci = q("nvmlDeviceGetPciInfo", handle, notes=notes)
    bus_id = NA if is_na(pci) else getattr(pci, "busId", NA)
    if isinstance(bus_id, bytes):
        bus_id = bus_id.decode("ascii", errors="replace")
    put("pci_bus_id", bus_id, str)

    mem = q("nvmlDeviceGetMemoryInfo", handle, notes=notes)
    if is_na(mem):
        for attr in ("memory_total_bytes", "memory_used_bytes", "memory_free_bytes"):
            put(attr, NA)
    else:
        total, free = int(mem.total), int(mem.free)
        put("memory_total_bytes", total)
        put("memory_free_bytes", free)
        # v1 "used" is total - free, the driver's reservation included (R510+ drivers).
        put("memory_used_bytes", int(getattr(mem, "used", total - free)))
    # The v2 call also reports the reservation separately (R510+).
    try:
        mem2 = q("nvmlDeviceGetMemoryInfo", handle, version=NVML_MEMORY_V2, notes=notes)
    except TypeError:  # bindings older than the version= argument
        mem2 = NA
    put("memory_reserved_bytes", NA if is_na(mem2) else getattr(mem2, "reserved", NA), int)

    cc = q("nvmlDeviceGetCudaComputeCapability", handle, notes=notes)
    put("compute_capability", cc, lambda v: f"{int(v[0])}.{int(v[1])}")
    put("memory_bus_width_bits", q("nvmlDeviceGetMemoryBusWidth", handle, notes=notes), int)
    put("memory_clock_max_mhz", q("nvmlDeviceGetMaxClockInfo", handle, NVML_CLOCK_MEM, notes=notes), int)
    # NVML power figures are milliwatts.
    put("power_draw_w", q("nvmlDeviceGetPowerUsage", handle, notes=notes), lambda v: round(v / 1000.0, 1))
    limit = q("nvmlDeviceGetEnforcedPowerLimit", handle, notes=notes)
    if is_na(limit):
        limit = q("nvmlDeviceGetPowerManagementLimit", handle, notes=notes)
    put("power_limit_w", limit, lambda v: round(v / 1000.0, 1))
    put("temperature_c", q("nvmlDeviceGetTemperature", handle, NVML_TEMPERATURE_GPU, notes=notes), int)
    util = q("nvmlDeviceGetUtilizationRates", handle, notes=notes)
    put("utilization_gpu_pct", NA if is_na(util) else util.gpu, int)
    put("utilization_memory_pct", NA if is_na(util) else util.memory, int)
    mig = q("nvmlDeviceGetMigMode", handle, notes=notes)
    put("mig_mode", mig, lambda v: int(v[0]) == NVML_DEVICE_MIG_ENABLE)

    procs = _collect_processes(handle, notes)
    if procs is None:
        info.processes = []
        missing.append("processes")
    else:
        info.processes = procs


def probe_gpus() -> list[GpuInfo]:
    """Every GPU NVML sees, in NVML order. Empty when NVML is unusable (``nvml.state()``
    says why) or no GPU is present. Never raises: a GPU that fails mid-probe is returned
    with ``error`` set."""
    st = nvml.state()
    if not st.ok or st.device_count == 0:
        return []
    try:
        driver, cuda = system_versions()
    except NvmlError:
        driver, cuda = None, None
    try:
        count = int(nvml.nvml_query("nvmlDeviceGetCount", default=st.device_count))
    except NvmlError:
        count = st.device_count
    return [probe_gpu(i, driver, cuda) for i in range(count)]
