"""Round 3 of the GPU measurements (issue 6), on the H200.

Two kinds of case, each a fresh process:
- ``trace-`` cases run tune-split configurations of rounds 1-2 again with the caching
  allocator's history recorded (child.py's spec key "trace"): the order and sizes of every
  block that generate() and the adapters' training step ask for, and every cudaMalloc the
  allocator made for them, from which the inference and adapter replays
  (core/estimate/step_replay.py) were written. No held-out case is traced.
- new configurations, measured after the replays' structure was fixed from the traces and
  before it was checked against them, mostly where the fitted reserve failed: small models
  at large batch, quantized weights, adapters. The same hash as rounds 1-2 holds a quarter out.

`python tests/gpu/cases_round3.py` writes tests/gpu/cases_h200_r3.json."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cases import L1, L8, Q05, Q15, Q3S, Q7, MI, G2, PHI, GPT2, earlier_cases, infer, lora, full, new_cases, traced, write_cases  # noqa: E402
from cases_round2 import CATALOG, L3, Q06, SMOL360, TINY  # noqa: E402

TRACE = [
    "infer-qwen2.5-0.5b-bf16-b64-p1024-n128",
    "infer-llama-3.2-1b-int8-b8-p1024-n64",
    "infer-qwen2.5-1.5b-fp4-b4-p4096-n64",
    "infer-llama-3.2-3b-bf16-b64-p512-n128",
    "infer-llama-3.1-8b-bf16-b8-p2048-n128",
    "infer-gemma-2-2b-bf16-b8-p2048-n64-eager",
    "qlora-phi-3-mini-4k-instruct-r16-qv-b4-s2048",
    "lora-llama-3.1-8b-r32-all-b1-s4096",
]

CASES = [
    infer(Q05, batch=32, prompt=2048, new=128),
    infer(SMOL360, batch=64, prompt=1024, new=256),
    infer(Q15, batch=16, prompt=2048, new=128),
    infer(L1, dtype="int8", batch=4, prompt=2048, new=64),
    infer(Q3S, dtype="nf4", batch=16, prompt=1024, new=128),
    infer(TINY, batch=32, prompt=1024, new=128),
    infer(GPT2, dtype="fp16", batch=64, prompt=512, new=256),
    infer(Q06, dtype="fp4", batch=8, prompt=2048, new=64),
    infer(L3, dtype="int8", batch=2, prompt=2048, new=64),
    infer(PHI, dtype="nf4", batch=16, prompt=1024, new=128),
    lora(PHI, r=8, targets="all", batch=2, seq=2048, task="qlora"),
    lora(MI, r=16, targets="all", batch=4, seq=1024, task="qlora"),
    lora(L3, r=16, targets="qv", batch=8, seq=1024),
    lora(Q7, r=32, targets="qv", batch=2, seq=2048, task="qlora"),
    full(G2, batch=4, seq=1024),
    full(Q15, batch=4, seq=2048),
    infer(L8, dtype="int8", batch=4, prompt=2048, new=64),
    infer(Q7, batch=32, prompt=1024, new=128),
]


def build() -> list[dict]:
    from calib_models import MODELS

    old = earlier_cases("cases.json", "cases_h200.json")
    out = [traced(old[cid]) for cid in TRACE]
    out += new_cases(CASES, lambda m: MODELS.get(m) or CATALOG[m], old)
    assert len({c["id"] for c in out}) == len(out)
    return out


if __name__ == "__main__":
    write_cases("cases_h200_r3.json", build())
