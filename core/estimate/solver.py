"""Solvers over the estimator: the largest batch and context that fit a card, the ranked
plans for a model on a card, and the fit matrix of the advisor table.

Every estimate grows monotonically with batch and sequence length, so "largest that fits"
is a doubling search followed by bisection: about 2 log2(limit) estimates."""

from __future__ import annotations

from typing import Callable, Iterable

from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.result import Estimate, FitMatrix, Plan, judge
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.model_spec import ModelSpec

MAX_BATCH = 4096


def _largest(fits: Callable[[int], bool], lo: int, hi: int) -> int:
    """Largest n in [lo, hi] with fits(n), given fits is monotone (True then False); lo-1 if none."""
    if not fits(lo):
        return lo - 1
    n = lo
    while n * 2 <= hi and fits(n * 2):
        n *= 2
    good, bad = n, min(hi + 1, n * 2)
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def max_batch(spec: ModelSpec, w: Workload, available: int, limit: int = MAX_BATCH) -> int:
    """Largest batch that fits in ``available`` bytes (0: not even batch 1)."""
    return max(0, _largest(lambda b: estimate(spec, w.with_(batch=b)).total_bytes <= available, 1, limit))


def max_seq(spec: ModelSpec, w: Workload, available: int) -> int:
    """Longest training sequence, or inference prompt (with ``new`` kept), that fits;
    capped at the model's maximum position. 0 when not even 128 tokens fit."""
    # Workload accepts at most 2**24 tokens; a config may claim more positions than that.
    cap = min(max(128, spec.max_position), 1 << 24)
    if w.training:
        n = _largest(lambda s: estimate(spec, w.with_(seq=s)).total_bytes <= available, 128, cap)
    else:
        room = max(128, cap - w.new)
        n = _largest(lambda p: estimate(spec, w.with_(prompt=p)).total_bytes <= available, 128, room)
    return n if n >= 128 else 0


# ---- plans --------------------------------------------------------------------------------

def _infer_candidates(base: Workload, spec: ModelSpec) -> list[tuple[int, Workload, str]]:
    hi = "bf16"
    out = [(0, base.with_(dtype=hi), "16-bit weights: reference quality"),
           (1, base.with_(dtype="int8"), "LLM.int8: near-lossless, slower"),
           (2, base.with_(dtype="nf4"), "4-bit NF4: small quality loss"),
           (3, base.with_(dtype="nf4", kv_dtype="fp8"), "4-bit weights and an 8-bit KV cache")]
    return out


def _train_candidates(base: Workload, spec: ModelSpec) -> list[tuple[int, Workload, str]]:
    b = base.with_(task="full", dtype="bf16", amp="none", optim="adamw", grad_ckpt=False)
    out = [
        (0, base.with_(task="full", dtype="fp32", amp="bf16", optim="adamw", grad_ckpt=False),
         "full fine-tune, fp32 master weights + bf16 autocast"),
        (1, b, "full fine-tune, pure bf16"),
        (1, b.with_(grad_ckpt=True), "full fine-tune bf16 with gradient checkpointing (about 30% slower)"),
        (2, b.with_(optim="adamw8bit", grad_ckpt=True), "full bf16, 8-bit AdamW, checkpointing"),
        (3, base.with_(task="galore", amp="none", dtype="bf16", optim="adamw8bit", grad_ckpt=True, galore_rank=128),
         "GaLore rank 128, 8-bit AdamW, checkpointing"),
        (4, base.with_(task="lora", amp="none", dtype="bf16", lora_targets="all", lora_r=max(16, base.lora_r), grad_ckpt=False),
         "LoRA on all linears, bf16 base"),
        (4, base.with_(task="lora", amp="none", dtype="bf16", lora_targets="all", lora_r=max(16, base.lora_r), grad_ckpt=True),
         "LoRA on all linears with checkpointing"),
        (5, base.with_(task="qlora", amp="none", dtype="nf4", lora_targets="all", lora_r=max(16, base.lora_r), grad_ckpt=True),
         "QLoRA (NF4 base, double quant) with checkpointing"),
    ]
    return out


def best_plans(spec: ModelSpec, available: int, base: Workload | None = None, card_name: str = "card",
               ram_available: int | None = None) -> list[Plan]:
    """Ranked ways to run ``spec`` on a card: the plans that fit first, closest to full
    quality first, then most headroom; then the ones that do not fit, smallest first."""
    base = base or Workload()
    cands = _train_candidates(base, spec) if base.training else _infer_candidates(base, spec)
    plans: list[Plan] = []
    seen = set()
    for rank, w, note in cands:
        if w in seen:
            continue
        seen.add(w)
        e = estimate(spec, w)
        v = judge(e.total_bytes, available, card_name, e.ram_bytes, ram_available)
        plans.append(Plan(workload=w, estimate=e, verdict=v, quality_rank=rank, note=note))
    plans.sort(key=lambda p: (not p.fits, p.quality_rank if p.fits else 0,
                              -p.verdict.headroom_bytes if p.fits else p.estimate.total_bytes))
    return plans


def plan_sentence(plans: list[Plan]) -> str:
    """One line a person reads first: 'LoRA bf16 needs 29.1 GiB; QLoRA r16 fits with 6.0 GiB to spare'."""
    from cardfit.core.units import fmt_bytes

    if not plans:
        return "no plan"
    fitting = [p for p in plans if p.fits]
    if not fitting:
        smallest = min(plans, key=lambda p: p.estimate.total_bytes)
        return (f"nothing fits: the smallest plan ({smallest.workload.label()}) needs "
                f"{fmt_bytes(smallest.estimate.total_bytes)} of {fmt_bytes(smallest.verdict.available_bytes)}")
    best = fitting[0]
    better = [p for p in plans if not p.fits and p.quality_rank < best.quality_rank]
    head = f"{best.workload.label()} fits with {fmt_bytes(best.verdict.headroom_bytes)} to spare"
    if better:
        b = min(better, key=lambda p: p.quality_rank)
        return f"{b.workload.label()} needs {fmt_bytes(b.estimate.total_bytes)}; {head}"
    return head


# ---- the advisor's fit matrix ------------------------------------------------------------

def standard_workloads(context: int = 4096, seq: int = 2048) -> list[tuple[str, Workload]]:
    """The advisor table's columns."""
    inf = Workload(task="infer", batch=1, prompt=max(1, context - 256) if context > 512 else context, new=256 if context > 512 else 1)
    return [
        ("Inference bf16", inf.with_(dtype="bf16")),
        ("Inference int8", inf.with_(dtype="int8")),
        ("Inference 4-bit", inf.with_(dtype="nf4")),
        ("LoRA bf16", Workload(task="lora", dtype="bf16", batch=1, seq=seq, lora_r=16, lora_targets="all", grad_ckpt=True)),
        ("QLoRA", Workload(task="qlora", dtype="nf4", batch=1, seq=seq, lora_r=16, lora_targets="all", grad_ckpt=True)),
        ("Full fine-tune", Workload(task="full", dtype="bf16", optim="adamw", batch=1, seq=seq, grad_ckpt=True)),
    ]


def fit_matrix(specs: Iterable[ModelSpec], available: int, card_name: str = "card",
               workloads: list[tuple[str, Workload]] | None = None) -> FitMatrix:
    workloads = workloads or standard_workloads()
    m = FitMatrix(card_name=card_name, available_bytes=available, workloads=workloads)
    for spec in specs:
        m.rows.append((spec.id, [estimate(spec, w) for _, w in workloads]))
    return m


def verdicts(matrix: FitMatrix) -> list[list[str]]:
    return [[judge(e.total_bytes, matrix.available_bytes, matrix.card_name).status for e in ests]
            for _, ests in matrix.rows]


__all__ = ["max_batch", "max_seq", "best_plans", "plan_sentence", "standard_workloads", "fit_matrix",
           "verdicts", "Estimate"]
