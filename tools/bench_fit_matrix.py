"""Benchmark of the advisor's fit matrix (issue 4): every catalog model x 20 workloads x
one card, timed cold (fresh specs, the allocator replay's cache emptied) and warm (the
same matrix again, as when the user picks another card). Target: under 50 ms.

    .venv/bin/python tools/bench_fit_matrix.py [--runs 7]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from cardfit.core.estimate.solver import fit_matrix, standard_workloads
from cardfit.core.estimate.step_replay import fragmentation
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.catalog import catalog_specs
from cardfit.core.units import GiB


def workloads() -> list[tuple[str, Workload]]:
    """The six advisor columns plus 14 more: the batch and sequence sweeps a planner runs."""
    out = list(standard_workloads())
    for task in ("lora", "qlora", "full"):
        for batch in (1, 4, 8):
            out.append((f"{task} b{batch}", Workload(task=task, batch=batch, seq=1024, grad_ckpt=batch > 1)))
    for batch, prompt in ((4, 2048), (8, 4096), (16, 1024), (1, 32768), (32, 512)):
        out.append((f"infer b{batch}", Workload(task="infer", batch=batch, prompt=prompt, new=256)))
    return out[:20]


def _time(specs_of, wl, runs: int) -> tuple[float, float]:
    cold, warm = [], []
    for _ in range(runs):
        specs = specs_of()
        fragmentation.cache_clear()
        t = time.perf_counter()
        fit_matrix(specs, 80 * GiB, workloads=wl)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        fit_matrix(specs, 80 * GiB, workloads=wl)
        warm.append(time.perf_counter() - t)
    return statistics.median(cold) * 1e3, statistics.median(warm) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    def fresh():  # no estimator memo
        return [dataclasses.replace(s) for s in catalog_specs()]

    n_models = len(catalog_specs())
    for title, wl in (("20 workloads", workloads()), ("the advisor table's 6 columns", list(standard_workloads()))):
        replayed = sum(w.task in ("full", "galore") for _, w in wl) * n_models
        cold, warm = _time(fresh, wl, args.runs)
        print(f"{n_models} models x {title} = {n_models * len(wl)} estimates "
              f"({replayed} full fine-tunes replayed through the allocator model), 1 card: "
              f"cold {cold:.0f} ms, warm {warm:.0f} ms (median of {args.runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
