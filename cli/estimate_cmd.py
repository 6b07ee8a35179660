"""`cardfit estimate MODEL [workload options] [--card NAME | --vram SIZE] [--json]`:
the predicted peak device memory and host RAM, as a breakdown."""

from __future__ import annotations

import json

from cardfit.cli.workload_args import add_card_args, add_workload_args, workload_from_args
from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.result import Estimate, Verdict, judge
from cardfit.core.units import GiB, fmt_bytes


def register(sub) -> None:
    p = sub.add_parser("estimate", help="predict peak GPU memory and RAM of a model under a workload",
                       description="Predict the peak device memory (per GPU, CUDA context included: what "
                                   "nvidia-smi shows) and host RAM of MODEL under a workload.")
    p.add_argument("model", metavar="MODEL", help="catalog id, config.json, model folder, .gguf file or Hub id")
    add_workload_args(p)
    add_card_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def card_for(args, required: bool = False):
    """The card named by --card/--vram; without either, the first detected GPU (None if none
    and not required)."""
    from cardfit.core.hardware.cards import resolve_card

    if getattr(args, "card", None) or getattr(args, "vram", None) or required:
        return resolve_card(args.card, args.vram)
    try:
        return resolve_card(None, None)
    except Exception:
        return None


def verdict_for(e: Estimate, card) -> Verdict | None:
    if card is None:
        return None
    return judge(e.total_bytes, card.available_bytes, card.name)


def run(args) -> int:
    from cardfit.core.specs.resolve import resolve_model

    spec = resolve_model(args.model)
    w = workload_from_args(args)
    e = estimate(spec, w)
    card = card_for(args)
    v = verdict_for(e, card)
    if args.json:
        out = e.to_json()
        out["card"] = v.to_json() if v else None
        print(json.dumps(out, indent=2))
        return 0
    print(render_estimate(e, v))
    return 0


def render_estimate(e: Estimate, v: Verdict | None) -> str:
    lines = [f"{e.model_name}  ({e.model_id}, {e.params / 1e9:.2f}B params, confidence {e.confidence})",
             f"Workload: {e.workload.label()}" + (f" on {e.workload.gpus} GPUs" if e.workload.gpus > 1 else ""),
             f"Peak during: {e.peak_stage}"]
    lines += [f"Warning: {x}" for x in e.warnings] + [""]
    width = max(len(c.label) for c in e.components) + 2
    lines.append(f"  {'Component':<{width}}{'GiB':>8}   Formula")
    for c in e.components:
        lines.append(f"  {c.label:<{width}}{c.bytes / GiB:8.2f}   {c.formula}")
    lines.append(f"  {'-' * (width + 8)}")
    lines.append(f"  {'Total per GPU':<{width}}{e.total_bytes / GiB:8.2f}")
    lines.append(f"  {'Host RAM':<{width}}{e.ram_bytes / GiB:8.2f}")
    if v:
        lines.append("")
        if v.fits:
            lines.append(f"{v.card_name}: {v.status.upper()} - {fmt_bytes(v.headroom_bytes)} to spare "
                         f"of {fmt_bytes(v.available_bytes)} available")
        else:
            lines.append(f"{v.card_name}: DOES NOT FIT - needs {fmt_bytes(-v.headroom_bytes)} more than the "
                         f"{fmt_bytes(v.available_bytes)} available")
    return "\n".join(lines)
