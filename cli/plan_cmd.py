"""`cardfit plan MODEL [--card NAME | --vram SIZE] [workload options] [--json]`: the
ranked ways to run or fine-tune MODEL on a card, and the largest batch and sequence."""

from __future__ import annotations

import json

from cardfit.cli.estimate_cmd import card_for
from cardfit.cli.workload_args import add_card_args, add_workload_args, workload_from_args
from cardfit.core.estimate.solver import best_plans, max_batch, max_seq, plan_sentence
from cardfit.core.units import GiB


def register(sub) -> None:
    p = sub.add_parser("plan", help="the plans that fit a card: method, precision, largest batch and context",
                       description="Rank the ways to run MODEL on a card. The workload options set the base "
                                   "(task, batch, sequence); --task infer (default) ranks inference plans, "
                                   "any training task ranks fine-tuning plans.")
    p.add_argument("model", metavar="MODEL")
    add_workload_args(p)
    add_card_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from cardfit.core.specs.resolve import resolve_model

    spec = resolve_model(args.model)
    base = workload_from_args(args)
    card = card_for(args, required=True)
    plans = best_plans(spec, card.available_bytes, base, card.name)
    best = next((p for p in plans if p.fits), None)
    extra = {}
    if best:
        extra = {"max_batch": max_batch(spec, best.workload, card.available_bytes),
                 "max_seq": max_seq(spec, best.workload, card.available_bytes)}
    if args.json:
        print(json.dumps({"model": {"id": spec.id, "name": spec.name, "params": spec.param_counts().total},
                          "card": {"name": card.name, "available_bytes": card.available_bytes},
                          "sentence": plan_sentence(plans), "plans": [p.to_json() for p in plans],
                          **extra}, indent=2))
        return 0
    print(f"{spec.name} on {card.name} ({card.available_bytes / GiB:.1f} GiB available)")
    print(plan_sentence(plans))
    print()
    print(f"  {'':2}{'Plan':<62}{'GiB':>8}  {'Verdict':<8} Note")
    for p in plans:
        mark = "*" if p is best else " "
        print(f"  {mark} {p.workload.label():<62}{p.estimate.total_bytes / GiB:8.2f}  {p.verdict.status:<8} {p.note}")
    if best:
        what = "sequence" if best.workload.training else "prompt"
        print(f"\nWith the best plan: largest batch {extra['max_batch']}, longest {what} {extra['max_seq']} tokens")
    return 0
