"""The one door to NVML (the NVIDIA Management Library, what nvidia-smi reads).

Everything in cardfit that asks the driver about a GPU goes through ``nvml_query``:

* NVML is initialised lazily, once, under a lock; the outcome (working, or why not) is kept
  as an ``NvmlState`` with a ``status`` and a message that tells the user what to do.
* A query whose answer the driver cannot give for this GPU (not supported, function missing
  in an older driver, no permission for this one field, no data yet) returns ``default``
  (the ``NA`` sentinel unless told otherwise), so one missing field never hides the rest.
* Errors that mean the GPU or the driver itself is gone (GPU lost, driver unloaded, ...)
  raise ``NvmlError``, a ``HardwareError`` carrying an ``NvmlStatus``.
* Byte strings from old bindings are decoded.

The bindings module is injectable: ``set_backend(fake)`` makes every query go to a stand-in
that implements the ``pynvml`` functions cardfit uses (tests/fakes/fake_nvml.py), and
``set_backend(None)`` goes back to the real ``pynvml`` (package nvidia-ml-py).

NVML is thread-safe ("NVML is thread-safe so it is safe to make simultaneous NVML calls from
multiple threads", NVML API reference, https://docs.nvidia.com/deploy/nvml-api/), so queries
take no lock of ours; only initialisation does.

We never call nvmlShutdown at exit: a sampler thread may still be inside a driver call, and
shutting NVML down under it can crash the interpreter on exit (nvitop's experience, see
nvitop/api/libnvml.py); the OS reclaims NVML's resources when the process ends.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Any, Callable

from cardfit.core.errors import HardwareError

__all__ = [
    "NA",
    "NaType",
    "NvmlStatus",
    "NvmlState",
    "NvmlError",
    "NvmlUnavailable",
    "set_backend",
    "get_backend",
    "reset",
    "state",
    "require",
    "nvml_query",
    "is_na",
    "classify_code",
]


class NaType:
    """The value of a field NVML could not give (``NA``). Falsy; prints as ``N/A``."""

    _instance: "NaType | None" = None

    def __new__(cls) -> "NaType":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NA"

    def __str__(self) -> str:
        return "N/A"

    def __reduce__(self):  # pickles (and copies) as the singleton
        return (NaType, ())


NA = NaType()


def is_na(value: Any) -> bool:
    return value is NA


class NvmlStatus(str, enum.Enum):
    """Why NVML works or not; the value is what ``detect --json`` writes."""

    OK = "ok"
    LIBRARY_MISSING = "library_missing"  # no libnvidia-ml / nvml.dll, or no nvidia-ml-py
    DRIVER_NOT_LOADED = "driver_not_loaded"  # library present, kernel module not loaded
    DRIVER_MISMATCH = "driver_mismatch"  # user-space library and kernel module differ
    NO_PERMISSION = "no_permission"  # cannot open /dev/nvidia*
    NO_GPU = "no_gpu"  # driver fine, zero GPUs visible
    GPU_LOST = "gpu_lost"  # a GPU fell off the bus / needs a reset
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


# NVML return codes (nvml.h, stable ABI; the same numbers as pynvml's NVML_ERROR_*). They
# are spelled out so that classification does not need pynvml, only the error's ``value``.
_ERR_UNINITIALIZED = 1
_ERR_INVALID_ARGUMENT = 2
_ERR_NOT_SUPPORTED = 3
_ERR_NO_PERMISSION = 4
_ERR_NOT_FOUND = 6
_ERR_INSUFFICIENT_SIZE = 7
_ERR_DRIVER_NOT_LOADED = 9
_ERR_TIMEOUT = 10
_ERR_LIBRARY_NOT_FOUND = 12
_ERR_FUNCTION_NOT_FOUND = 13
_ERR_GPU_IS_LOST = 15
_ERR_RESET_REQUIRED = 16
_ERR_LIB_RM_VERSION_MISMATCH = 18
_ERR_NO_DATA = 21
_ERR_ARGUMENT_VERSION_MISMATCH = 25
_ERR_DEPRECATED = 26
_ERR_NOT_READY = 27
_ERR_GPU_NOT_FOUND = 28
_ERR_UNKNOWN = 999

# A query failing with one of these concerns that one field only: it reads NA.
_SOFT_CODES = frozenset(
    {
        _ERR_NOT_SUPPORTED,
        _ERR_NO_PERMISSION,
        _ERR_NOT_FOUND,
        _ERR_INSUFFICIENT_SIZE,
        _ERR_FUNCTION_NOT_FOUND,
        _ERR_NO_DATA,
        _ERR_ARGUMENT_VERSION_MISMATCH,
        _ERR_DEPRECATED,
        _ERR_NOT_READY,
        _ERR_INVALID_ARGUMENT,
    }
)

_NVML_DOCS = "https://docs.nvidia.com/deploy/nvml-api/"
_DRIVER_URL = "https://www.nvidia.com/Download/index.aspx"

_MESSAGES = {
    NvmlStatus.LIBRARY_MISSING: (
        "the NVIDIA driver library (libnvidia-ml.so.1, nvml.dll on Windows) was not found: "
        "no NVIDIA driver is installed here, or this container was started without GPU "
        f"access (docker run --gpus all). Install the driver from {_DRIVER_URL} and check "
        "that `nvidia-smi` works"
    ),
    NvmlStatus.DRIVER_NOT_LOADED: (
        "the NVIDIA driver is installed but its kernel module is not loaded. Reboot, or run "
        "`sudo modprobe nvidia`, then check that `nvidia-smi` works (Secure Boot can block "
        "an unsigned module)"
    ),
    NvmlStatus.DRIVER_MISMATCH: (
        "the NVIDIA driver library and the loaded kernel module have different versions, "
        "usually after a driver upgrade without a reboot. Reboot (or reload the nvidia "
        "kernel modules); `nvidia-smi` fails the same way until then"
    ),
    NvmlStatus.NO_PERMISSION: (
        "no permission to open the GPU device files (/dev/nvidia*). Add your user to the "
        "group that owns them (often 'video' or 'render') and log in again; in a container "
        "pass the GPU through (docker run --gpus all)"
    ),
    NvmlStatus.NO_GPU: (
        "the NVIDIA driver is loaded but reports no GPU. In a container, start it with "
        "--gpus all; on a laptop, check that the discrete GPU is enabled in the BIOS/UEFI"
    ),
    NvmlStatus.GPU_LOST: (
        "a GPU stopped answering (NVML: GPU is lost or needs a reset; `dmesg` usually shows "
        "an Xid error). Stop the jobs using it and reset it (`nvidia-smi -r`) or reboot"
    ),
    NvmlStatus.UNKNOWN: "NVML failed in an unexpected way; check that `nvidia-smi` works",
}


def classify_code(code: int | None) -> NvmlStatus:
    """The ``NvmlStatus`` an NVML return code stands for, seen at init or on a GPU call."""
    if code == _ERR_LIBRARY_NOT_FOUND:
        return NvmlStatus.LIBRARY_MISSING
    if code == _ERR_DRIVER_NOT_LOADED:
        return NvmlStatus.DRIVER_NOT_LOADED
    if code == _ERR_LIB_RM_VERSION_MISMATCH:
        return NvmlStatus.DRIVER_MISMATCH
    if code == _ERR_NO_PERMISSION:
        return NvmlStatus.NO_PERMISSION
    if code == _ERR_GPU_NOT_FOUND:
        return NvmlStatus.NO_GPU
    if code in (_ERR_GPU_IS_LOST, _ERR_RESET_REQUIRED, _ERR_TIMEOUT):
        return NvmlStatus.GPU_LOST
    return NvmlStatus.UNKNOWN


def message_for(status: NvmlStatus, detail: str | None = None) -> str:
    """The user message for a status: what is wrong and what to do."""
    if status is NvmlStatus.OK:
        return "NVML is working"
    text = _MESSAGES[status]
    if detail and status is NvmlStatus.UNKNOWN:
        text = f"{text} (NVML said: {detail})"
    return text


@dataclass(frozen=True)
class NvmlState:
    """What initialising NVML gave: ``status``, a user ``message``, the raw ``detail``."""

    status: NvmlStatus
    message: str
    detail: str | None = None
    device_count: int = 0

    @property
    def ok(self) -> bool:
        """NVML answers queries (``no_gpu`` is initialised too, with zero devices)."""
        return self.status in (NvmlStatus.OK, NvmlStatus.NO_GPU)

    def to_json(self) -> dict:
        return {"status": self.status.value, "message": self.message}


class NvmlError(HardwareError):
    """An NVML call failed in a way that is not about one field (GPU lost, driver gone)."""

    def __init__(self, status: NvmlStatus, message: str, detail: str | None = None,
                 function: str | None = None):
        self.status = status
        self.detail = detail
        self.function = function
        super().__init__(message)

    def to_json(self) -> dict:
        d = super().to_json()
        d.update(status=self.status.value, detail=self.detail)
        return d


class NvmlUnavailable(NvmlError):
    """NVML could not be initialised at all; ``status`` says why."""


# -- module state ---------------------------------------------------------------------------

_lock = threading.Lock()
_backend: Any = None  # the injected module, or None for "import pynvml"
_state: NvmlState | None = None
_live: Any = None  # the module NVML was initialised through


def set_backend(module: Any | None) -> None:
    """Use ``module`` (anything with pynvml's functions) for every NVML call from now on;
    ``None`` goes back to the real ``pynvml``. Forgets the previous initialisation."""
    global _backend
    with _lock:
        _backend = module
        _forget_locked()


def get_backend() -> Any | None:
    """The module NVML calls go to once initialised (None before, or when unavailable)."""
    return _live


def reset() -> None:
    """Forget the initialisation so the next query tries again (a GUI "refresh" after the
    user fixed a permission or loaded the driver)."""
    with _lock:
        _forget_locked()


def _forget_locked() -> None:
    global _state, _live
    _state = None
    _live = None


def _error_code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _error_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # pynvml's __str__ calls into the library, which may be gone
        text = ""
    code = _error_code(exc)
    if not text:
        text = type(exc).__name__
    return f"{text} (NVML code {code})" if code is not None else text


def _is_nvml_error(exc: BaseException, module: Any) -> bool:
    base = getattr(module, "NVMLError", None)
    if isinstance(base, type) and isinstance(exc, base):
        return True
    # A stand-in that raises the real pynvml's errors, or its own with a numeric ``value``.
    return type(exc).__name__.startswith("NVMLError") and _error_code(exc) is not None


def _is_binding_mismatch(exc: BaseException, module: Any) -> bool:
    # pynvml raises NVMLLibraryMismatchError when an unversioned wrapper (e.g.
    # nvmlDeviceGetComputeRunningProcesses -> _v3) is missing from an older driver.
    cls = getattr(module, "NVMLLibraryMismatchError", None)
    if isinstance(cls, type) and isinstance(exc, cls):
        return True
    return type(exc).__name__ == "NVMLLibraryMismatchError"


def _init_locked() -> NvmlState:
    global _state, _live
    module = _backend
    if module is None:
        try:
            import pynvml as module  # noqa: PLC0415 - lazy on purpose
        except ImportError as exc:
            _state = NvmlState(
                NvmlStatus.LIBRARY_MISSING,
                "the Python package nvidia-ml-py (module pynvml) is not installed: "
                "pip install nvidia-ml-py",
                detail=str(exc),
            )
            return _state
    try:
        module.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status
        if _is_nvml_error(exc, module):
            status = classify_code(_error_code(exc))
        elif isinstance(exc, OSError):
            status = NvmlStatus.LIBRARY_MISSING
        elif isinstance(exc, AttributeError):
            _state = NvmlState(
                NvmlStatus.LIBRARY_MISSING,
                "the module pynvml is not NVIDIA's nvidia-ml-py (another package named "
                "pynvml shadows it): pip install --force-reinstall nvidia-ml-py",
                detail=str(exc),
            )
            return _state
        else:
            status = NvmlStatus.UNKNOWN
        detail = _error_text(exc)
        _state = NvmlState(status, message_for(status, detail), detail=detail)
        return _state
    _live = module
    try:
        count = int(module.nvmlDeviceGetCount())
    except Exception as exc:  # noqa: BLE001
        detail = _error_text(exc)
        status = classify_code(_error_code(exc)) if _is_nvml_error(exc, module) else NvmlStatus.UNKNOWN
        _live = None
        _state = NvmlState(status, message_for(status, detail), detail=detail)
        return _state
    if count == 0:
        _state = NvmlState(NvmlStatus.NO_GPU, message_for(NvmlStatus.NO_GPU), device_count=0)
    else:
        plural = "s" if count != 1 else ""
        _state = NvmlState(NvmlStatus.OK, f"NVML is working: {count} NVIDIA GPU{plural} visible",
                           device_count=count)
    return _state


def state() -> NvmlState:
    """Initialise NVML if not done yet (once, thread-safe) and say how it went. Never raises."""
    current = _state
    if current is not None:
        return current
    with _lock:
        if _state is not None:
            return _state
        return _init_locked()


def require() -> Any:
    """The initialised bindings module, or ``NvmlUnavailable`` saying why there is none."""
    st = state()
    module = _live
    if not st.ok or module is None:
        raise NvmlUnavailable(st.status, st.message, st.detail)
    return module


def nvml_query(fn: str | Callable[..., Any], *args: Any, default: Any = NA,
               notes: list[str] | None = None, **kwargs: Any) -> Any:
    """Call an NVML function: ``fn`` is a pynvml function name (looked up in the backend)
    or a callable. Initialises NVML on first use.

    Returns ``default`` (``NA``) when the answer is missing for this one field: not
    supported on this GPU, a function the driver is too old for, no permission for this
    field, no data yet. When ``notes`` is a list, a short "function: reason" is appended to
    it in that case. Decodes bytes. Raises ``NvmlUnavailable`` when NVML cannot be used at
    all and ``NvmlError`` (with a status, e.g. ``gpu_lost``) when the GPU or driver failed.
    """
    module = require()
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))
    if isinstance(fn, str):
        func = getattr(module, fn, None)
        if func is None:
            if notes is not None:
                notes.append(f"{name}: not in this pynvml")
            return default
    else:
        func = fn
    try:
        value = func(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - sorted below
        if _is_binding_mismatch(exc, module):
            if notes is not None:
                notes.append(f"{name}: not in this driver")
            return default
        if not _is_nvml_error(exc, module):
            raise
        code = _error_code(exc)
        if code in _SOFT_CODES:
            if notes is not None:
                notes.append(f"{name}: {_error_text(exc)}")
            return default
        status = classify_code(code)
        detail = _error_text(exc)
        raise NvmlError(status, f"{name}: {message_for(status, detail)}", detail=detail,
                        function=name) from exc
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value
