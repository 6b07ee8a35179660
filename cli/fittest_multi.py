"""`cardfit test MODEL --gpus N [--fsdp full|grad-op | --zero 1|2|3] [--offload optimizer|params]`:
the fit test over N GPUs of this machine, one rank per GPU (core/fittest/multi_launcher.py).
Called by cli/test_cmd.py when --gpus is above 1; prints the same summary as one GPU, with
the measured peak of every GPU next to the estimator's per-GPU prediction, and the host RAM
of all ranks together."""

from __future__ import annotations

import json

from cardfit.core.errors import UsageError
from cardfit.core.units import GiB


def run_multi(args, request) -> int:
    from cardfit.cli.test_cmd import EXIT, _drive, _save
    from cardfit.core.fittest.multi_launcher import MultiFitTestRun, check_multi
    from cardfit.core.specs.resolve import resolve_model

    if getattr(args, "search", None):
        raise UsageError("--search runs on one GPU; with --gpus N test one batch size at a time")
    check_multi(request)
    spec = resolve_model(args.model)
    run_ = MultiFitTestRun(request, spec)
    result = _drive(run_, args)
    _save(args, result)
    if args.json or args.stream:
        doc = {"type": "summary", "verdict": result.verdict, **result.to_json(),
               "predicted_host_ram_bytes": run_.predicted_host_bytes}
        print(json.dumps(doc, separators=(",", ":")) if args.stream else json.dumps(doc, indent=1), flush=True)
    else:
        print(render_multi(result, run_.predicted_host_bytes))
    return EXIT[result.status]


def render_multi(r, predicted_host_bytes: int | None = None) -> str:
    """The one-GPU summary with a per-GPU table (and the host RAM) before the verdict."""
    from cardfit.cli.test_cmd import render_result

    lines = render_result(r).split("\n")
    at = max((i for i, ln in enumerate(lines) if ln.startswith("Verdict:")), default=len(lines))

    def gib(n) -> str:
        return f"{n / GiB:8.2f} GiB" if n is not None else "        -   "

    cpu = r.device == "cpu"
    table = [f"  Per {'rank (RSS, CPU)' if cpu else 'GPU'}: measured vs predicted per GPU",
             f"    {'rank':<5}{'device':<9}{'measured':>12}  {'predicted':>12}  {'error':>8}  status"]
    for g in r.per_gpu:
        measured = g.get("peak_rss_bytes") if cpu else g.get("peak_device_bytes")
        err = g.get("error_pct")
        table.append(f"    {g.get('rank', '?')!s:<5}{str(g.get('device') or '?'):<9}{gib(measured):>12}  "
                     f"{gib(g.get('predicted_bytes')):>12}  {(f'{err:+.1f} %' if err is not None else '-'):>8}  "
                     f"{g.get('status', '?')}" + (f" in {g['phase']}" if g.get("phase") else ""))
    table.append(f"    host RAM, all ranks: measured {gib(r.peak_rss_bytes).strip()}"
                 + (f", predicted {gib(predicted_host_bytes).strip()}" if predicted_host_bytes else ""))
    table.append("")
    return "\n".join(lines[:at] + table + lines[at:])
