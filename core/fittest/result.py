"""What a fit test ended in: one ``FitTestResult`` per run, whatever the ending (it fits, it
ran out of memory, it failed, it hung past its time limit, it was cancelled, it crashed).

Saved as JSON (schema ``cardfit.fittest/1``) by ``cardfit test --out`` and read back by the
report and the GUI; ``from_json`` checks each field's type and names the first bad one."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cardfit.core.errors import FitTestError

SCHEMA = "cardfit.fittest/1"
STATUSES = ("fits", "oom", "error", "timeout", "cancelled", "crashed")

# Largest result file `load` reads: a 10-minute run at 50 Hz is ~30k samples (~3 MB).
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass
class FitTestResult:
    status: str  # one of STATUSES
    message: str = ""
    phase: str | None = None  # where it stopped (None when it ran to the end)
    # The process's own peak device memory (NVML used - the baseline read before CUDA
    # started: what nvidia-smi shows for it). None on a CPU run.
    peak_device_bytes: int | None = None
    predicted_bytes: int | None = None  # the estimator's total for the same workload
    error_pct: float | None = None  # (predicted - measured) / measured * 100; > 0 = over-estimate
    device_total_bytes: int | None = None  # the card's memory (host RAM on a CPU run)
    available_bytes: int | None = None  # free before the run started
    peak_rss_bytes: int | None = None
    step_seconds: float | None = None  # median over the measured steps
    tokens_per_second: float | None = None
    samples: list[dict] = field(default_factory=list)  # {"t","phase","device_used","allocated","reserved","rss"}
    phases: list[dict] = field(default_factory=list)  # {"phase","t"}
    marks: list[dict] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # {"id","name","params"}
    workload: dict = field(default_factory=dict)  # Workload.to_json()
    gpu: dict = field(default_factory=dict)  # {"index","name"}
    started: str = ""  # ISO time, UTC
    # Beyond the contract's fields (all optional when read back):
    device: str | None = None  # "cuda:0" | "cpu"
    builder: str | None = None  # "hf" | "builtin"
    notes: list = field(default_factory=list)  # what the child built (PEFT targets, quantized layers)
    peak_reserved_bytes: int | None = None  # torch caching allocator peak
    peak_allocated_bytes: int | None = None  # torch tensors' peak
    wall_seconds: float | None = None
    exit_code: int | None = None  # the child's; negative = killed by that signal
    garbage_lines: int = 0  # lines on the child's stdout that were not JSON events
    python: str | None = None  # the interpreter the child ran under
    # Multi-GPU runs (issue 10, multi_launcher.py): one entry per rank, {"rank", "gpu_index",
    # "device", "name", "status", "peak_device_bytes", "predicted_bytes", "error_pct",
    # "peak_rss_bytes", "samples", ...}; empty for a one-GPU run.
    per_gpu: list = field(default_factory=list)

    # ---- derived ------------------------------------------------------------------------
    @property
    def fits(self) -> bool:
        return self.status == "fits"

    @property
    def measured_bytes(self) -> int | None:
        """The figure the run is judged by: device peak on a GPU, RSS on the CPU."""
        return self.peak_device_bytes if self.peak_device_bytes is not None else self.peak_rss_bytes

    @property
    def headroom_bytes(self) -> int | None:
        if self.available_bytes is None or self.measured_bytes is None:
            return None
        return self.available_bytes - self.measured_bytes

    @property
    def verdict(self) -> str:
        """A short verdict: "fits", "does not fit", or what stopped the run."""
        return {"fits": "fits", "oom": "does not fit"}.get(self.status, self.status)

    # ---- JSON ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {"schema": SCHEMA, **d}

    def dumps(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_json(), indent=indent, allow_nan=False, default=_nan_free)

    @classmethod
    def from_json(cls, d: Any) -> "FitTestResult":
        if not isinstance(d, dict):
            raise FitTestError("not a fit-test result: the top level is not a JSON object")
        schema = d.get("schema", SCHEMA)
        if not isinstance(schema, str) or not schema.startswith("cardfit.fittest/"):
            raise FitTestError(f"not a fit-test result: field 'schema' is {schema!r}, expected {SCHEMA!r}")
        if schema != SCHEMA:
            raise FitTestError(f"field 'schema': {schema!r} is not supported (this cardfit reads {SCHEMA!r})")
        if "status" not in d:
            raise FitTestError("fit-test result: field 'status' is missing")
        if d["status"] not in STATUSES:
            raise FitTestError(f"fit-test result: field 'status' is {d['status']!r}, "
                               f"not one of {', '.join(STATUSES)}")
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            kw[f.name] = _check(f.name, d[f.name])
        return cls(**kw)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FitTestResult":
        try:
            size = os.stat(path).st_size
            if size > MAX_FILE_BYTES:
                raise FitTestError(f"{path}: {size} bytes is too large for a fit-test result")
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except FitTestError:
            raise
        except OSError as exc:
            raise FitTestError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise FitTestError(f"{path}: not a fit-test result (invalid JSON: {exc})") from None
        try:
            return cls.from_json(doc)
        except FitTestError as exc:
            raise FitTestError(f"{path}: {exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Writes atomically: a temporary file beside ``path``, then a rename, so a
        failure (disk full, folder read-only) leaves any old file intact."""
        from cardfit.core.atomic import atomic_write_text

        atomic_write_text(path, self.dumps() + "\n", error=FitTestError)


def _nan_free(o: Any) -> Any:
    return str(o)


# Field types as JSON gives them back: (allowed types, nullable).
_INT, _FLOAT, _STR = (int,), (int, float), (str,)
_TYPES: dict[str, tuple[tuple, bool]] = {
    "status": (_STR, False), "message": (_STR, False), "phase": (_STR, True),
    "peak_device_bytes": (_INT, True), "predicted_bytes": (_INT, True), "error_pct": (_FLOAT, True),
    "device_total_bytes": (_INT, True), "available_bytes": (_INT, True), "peak_rss_bytes": (_INT, True),
    "step_seconds": (_FLOAT, True), "tokens_per_second": (_FLOAT, True),
    "samples": ((list,), False), "phases": ((list,), False), "marks": ((list,), False),
    "versions": ((dict,), False), "model": ((dict,), False), "workload": ((dict,), False),
    "gpu": ((dict,), False), "started": (_STR, False), "device": (_STR, True), "builder": (_STR, True),
    "notes": ((list,), False), "peak_reserved_bytes": (_INT, True), "peak_allocated_bytes": (_INT, True),
    "wall_seconds": (_FLOAT, True), "exit_code": (_INT, True), "garbage_lines": (_INT, False),
    "python": (_STR, True), "per_gpu": ((list,), False),
}


def _check(name: str, value: Any) -> Any:
    types, nullable = _TYPES[name]
    if value is None and nullable:
        return None
    ok = isinstance(value, types) and not isinstance(value, bool)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if ok and types is _INT and value < -(1 << 62):
        ok = False
    if not ok:
        raise FitTestError(f"fit-test result: field '{name}' has a bad value {_short(value)}")
    if name in ("samples", "phases", "marks", "per_gpu") and not all(isinstance(x, dict) for x in value):
        raise FitTestError(f"fit-test result: field '{name}' must be a list of objects")
    if name == "samples":
        for i, s in enumerate(value):
            for k in ("t", "device_used", "allocated", "reserved", "rss"):
                v = s.get(k)
                if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                    raise FitTestError(f"fit-test result: field 'samples[{i}].{k}' has a bad value {_short(v)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
