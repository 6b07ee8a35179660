"""What the estimator returns: a named breakdown a person can read and check."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cardfit.core.estimate.workload import Workload
from cardfit.core.units import fmt_bytes

# Breakdown keys, in the order the GUI's stacked bar and the report show them.
COMPONENT_ORDER = (
    "cuda_context", "weights", "quant_constants", "adapters", "gradients", "optimizer",
    "optimizer_temp", "activations", "logits", "kv_cache", "temp_buffers", "allocator_reserve",
)

LABELS = {
    "cuda_context": "CUDA context and libraries",
    "weights": "Weights",
    "quant_constants": "Quantization constants",
    "adapters": "Adapters (LoRA)",
    "gradients": "Gradients",
    "optimizer": "Optimizer states",
    "optimizer_temp": "Optimizer step buffers",
    "activations": "Activations",
    "logits": "Logits and loss",
    "kv_cache": "KV cache",
    "temp_buffers": "Temporary buffers",
    "allocator_reserve": "Allocator reserve",
}


@dataclass(frozen=True)
class Component:
    key: str  # one of COMPONENT_ORDER
    bytes: int
    formula: str  # the arithmetic with this model's numbers, e.g. "8.03e9 params x 2 B (bf16)"
    source: str  # where the formula comes from (paper, library file)

    @property
    def label(self) -> str:
        return LABELS.get(self.key, self.key)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "bytes": self.bytes,
                "formula": self.formula, "source": self.source}


@dataclass(frozen=True)
class Estimate:
    model_id: str
    model_name: str
    params: int
    workload: Workload
    components: tuple[Component, ...]  # device memory per GPU at the predicted peak
    ram_components: tuple[Component, ...]  # host RAM at its peak
    peak_stage: str  # when the peak happens: "forward", "backward", "optimizer step", "prefill", "decode"
    assumptions: tuple[str, ...] = ()
    confidence: str = "high"
    # What a real run of this workload would hit regardless of memory (one sentence each).
    warnings: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        """Predicted peak device memory of the process per GPU, CUDA context included
        (what nvidia-smi shows for it)."""
        return sum(c.bytes for c in self.components)

    @property
    def ram_bytes(self) -> int:
        return sum(c.bytes for c in self.ram_components)

    def component(self, key: str) -> int:
        return sum(c.bytes for c in self.components if c.key == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": {"id": self.model_id, "name": self.model_name, "params": self.params},
            "workload": self.workload.to_json(),
            "total_bytes": self.total_bytes,
            "ram_bytes": self.ram_bytes,
            "peak_stage": self.peak_stage,
            "components": {c.key: c.bytes for c in self.components},
            "breakdown": [c.to_json() for c in self.components],
            "ram_components": {c.key: c.bytes for c in self.ram_components},
            "ram_breakdown": [c.to_json() for c in self.ram_components],
            "assumptions": list(self.assumptions),
            "confidence": self.confidence,
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        return f"{self.model_name}: {self.workload.label()} -> {fmt_bytes(self.total_bytes)} per GPU"


@dataclass(frozen=True)
class Verdict:
    """An estimate judged against one card."""

    fits: bool
    tight: bool  # fits with under 10% of the card's available memory to spare
    needed_bytes: int
    available_bytes: int
    card_name: str
    ram_fits: bool = True

    @property
    def headroom_bytes(self) -> int:
        return self.available_bytes - self.needed_bytes

    @property
    def status(self) -> str:
        if not self.fits:
            return "no"
        return "tight" if self.tight else "fits"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(headroom_bytes=self.headroom_bytes, status=self.status)
        return d


TIGHT_FRACTION = 0.10


def judge(needed: int, available: int, card_name: str, ram_needed: int = 0,
          ram_available: int | None = None) -> Verdict:
    fits = needed <= available
    tight = fits and (available - needed) < TIGHT_FRACTION * available
    ram_fits = ram_available is None or ram_needed <= ram_available
    return Verdict(fits=fits, tight=tight, needed_bytes=needed, available_bytes=available,
                   card_name=card_name, ram_fits=ram_fits)


@dataclass(frozen=True)
class Plan:
    """One candidate way to run a model on a card (the planner's row)."""

    workload: Workload
    estimate: Estimate
    verdict: Verdict
    quality_rank: int  # 0 = closest to full-precision quality
    note: str = ""

    @property
    def fits(self) -> bool:
        return self.verdict.fits

    def to_json(self) -> dict[str, Any]:
        return {"workload": self.workload.to_json(), "label": self.workload.label(),
                "total_bytes": self.estimate.total_bytes, "ram_bytes": self.estimate.ram_bytes,
                "fits": self.verdict.fits, "status": self.verdict.status,
                "headroom_bytes": self.verdict.headroom_bytes, "note": self.note,
                "components": {c.key: c.bytes for c in self.estimate.components}}


@dataclass
class FitMatrix:
    """Catalog x standard workloads x one card: what the advisor table shows."""

    card_name: str
    available_bytes: int
    workloads: list[tuple[str, Workload]]  # (column title, workload)
    rows: list[tuple[str, list[Estimate]]] = field(default_factory=list)  # (model id, estimate per column)
