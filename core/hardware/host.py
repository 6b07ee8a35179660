"""The host around the GPU: RAM, swap, CPU, OS and Python (``HostInfo``), and, separately
and only on request, which torch / CUDA runtime / cuDNN this interpreter would use
(``torch_versions()``, the only place here that imports torch, lazily).

RAM matters to the estimate too: loading a checkpoint, CPU offload and optimizer offload
all need host memory. Nothing here needs a GPU; every field that cannot be read is None.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = ["HostInfo", "probe_host", "cpu_model", "os_string", "TorchVersions", "torch_versions"]


@dataclass
class HostInfo:
    ram_total_bytes: int | None = None
    ram_available_bytes: int | None = None
    swap_total_bytes: int | None = None
    swap_used_bytes: int | None = None
    cpu_model: str | None = None
    cpu_cores_physical: int | None = None
    cpu_cores_logical: int | None = None
    os: str | None = None
    python: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "HostInfo":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in known})


# Arm CPU part numbers as /proc/cpuinfo shows them ("CPU part"), for the Arm servers that
# carry NVIDIA GPUs (Grace is Neoverse V2). Source: Arm's MIDR part numbers, also in the
# Linux kernel's arch/arm64/include/asm/cputype.h (ARM_CPU_PART_NEOVERSE_*).
_ARM_PARTS = {
    "0xd0c": "Arm Neoverse N1",
    "0xd40": "Arm Neoverse V1",
    "0xd49": "Arm Neoverse N2",
    "0xd4f": "Arm Neoverse V2",
}


def cpu_model(cpuinfo: str | None = None) -> str | None:
    """The CPU's marketing name: /proc/cpuinfo on Linux, the registry on Windows,
    sysctl-free fallbacks (platform) elsewhere. ``cpuinfo`` is for tests."""
    text = cpuinfo
    if text is None and sys.platform.startswith("linux"):
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            text = None
    if text:
        keys: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                keys.setdefault(key.strip().lower(), value.strip())
        for key in ("model name", "hardware", "cpu model", "model"):
            value = keys.get(key)
            if value and not value.isdigit():
                return " ".join(value.split())
        part = keys.get("cpu part")
        if part and keys.get("cpu implementer", "").lower() == "0x41":
            return _ARM_PARTS.get(part.lower(), f"Arm CPU (part {part})")
    if sys.platform == "win32":
        try:
            import winreg  # noqa: PLC0415

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,
                                r"HARDWARE\DESCRIPTION\System\CentralProcessor\0") as key:
                return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
        except OSError:
            pass
    name = platform.processor() or platform.machine()
    return name or None


def os_string() -> str:
    """"Ubuntu 22.04.4 LTS (Linux 5.15.0-105-generic, x86_64)", "Windows 11 (10.0.22631,
    AMD64)": the distribution where one is named, then kernel and machine."""
    system, release, machine = platform.system(), platform.release(), platform.machine()
    pretty = None
    if system == "Linux":
        for path in ("/etc/os-release", "/usr/lib/os-release"):
            try:
                for line in Path(path).read_text(errors="replace").splitlines():
                    if line.startswith("PRETTY_NAME="):
                        pretty = line.split("=", 1)[1].strip().strip('"')
                        break
            except OSError:
                continue
            if pretty:
                break
        if "microsoft" in release.lower():
            pretty = f"{pretty or 'Linux'} on WSL2"
        return f"{pretty or 'Linux'} (Linux {release}, {machine})"
    if system == "Windows":
        return f"Windows {release} ({platform.version()}, {machine})"
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0] or release} ({machine})"
    return f"{system} {release} ({machine})".strip()


def probe_host() -> HostInfo:
    """Read the host. Never raises; unknown fields are None."""
    info = HostInfo(cpu_model=cpu_model(), python=platform.python_version())
    try:
        info.os = os_string()
    except Exception:  # noqa: BLE001
        info.os = platform.platform()
    try:
        import psutil  # noqa: PLC0415

        vm = psutil.virtual_memory()
        info.ram_total_bytes, info.ram_available_bytes = int(vm.total), int(vm.available)
        sw = psutil.swap_memory()
        info.swap_total_bytes, info.swap_used_bytes = int(sw.total), int(sw.used)
        info.cpu_cores_physical = psutil.cpu_count(logical=False)
        info.cpu_cores_logical = psutil.cpu_count(logical=True)
    except Exception:  # noqa: BLE001 - psutil missing or refused: keep what os knows
        info.cpu_cores_logical = os.cpu_count()
        if hasattr(os, "sysconf"):
            try:
                info.ram_total_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            except (ValueError, OSError):
                pass
    return info


@dataclass(frozen=True)
class TorchVersions:
    """What torch this interpreter has. ``error`` says why torch is not usable (then the
    version fields are None). ``cuda_runtime`` is the CUDA torch was built with ("12.4";
    None for a CPU-only build)."""

    torch: str | None = None
    cuda_runtime: str | None = None
    cudnn: str | None = None
    cuda_available: bool | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _format_cudnn(v: int | None) -> str | None:
    """torch.backends.cudnn.version(): 8902 -> "8.9.2" (cuDNN 8: major*1000 + minor*100 +
    patch), 90100 -> "9.1.0" (cuDNN 9: major*10000 + minor*100 + patch; cudnn_version.h)."""
    if not v:
        return None
    v = int(v)
    if v >= 90000:
        return f"{v // 10000}.{(v % 10000) // 100}.{v % 100}"
    return f"{v // 1000}.{(v % 1000) // 100}.{v % 100}"


def torch_versions(check_cuda: bool = False) -> TorchVersions:
    """Import torch (only now, never at module import) and report its versions.

    ``check_cuda`` also asks ``torch.cuda.is_available()``, which loads the CUDA driver in
    this process; leave it off in a GUI that does not need it. Never raises."""
    try:
        import torch  # noqa: PLC0415 - lazy on purpose: torch takes seconds to import
    except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from a broken CUDA lib
        return TorchVersions(error=f"torch is not importable: {type(exc).__name__}: {exc}")
    cudnn = None
    try:
        if torch.backends.cudnn.is_available():
            cudnn = _format_cudnn(torch.backends.cudnn.version())
    except Exception:  # noqa: BLE001
        cudnn = None
    available = None
    if check_cuda:
        try:
            available = bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001
            available = False
    return TorchVersions(torch=str(torch.__version__),
                         cuda_runtime=getattr(torch.version, "cuda", None),
                         cudnn=cudnn, cuda_available=available)
