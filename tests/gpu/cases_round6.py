"""Round 6 of the GPU measurements (issue 6), on the H200.

- new configurations, each with the estimate written into the case file before it ran
  (``predicted_before``): LLM.int8 at few prompt tokens on five models, where the outlier
  columns' count sets the reserve (int8_outliers.py, set from round 4's histories before
  any of these ran), and Gemma 2 full fine-tunes with checkpointing at other lengths than
  round 4's; the same hash splits them;
- two-step allocator histories of Gemma 2 with checkpointing at 3,072 and 6,144 tokens
  (trace-only: no measured case has them; the held-out 4,096-token case is not traced),
  and, once measured, the histories of the two LLM.int8 runs furthest from their predictions.

`python tests/gpu/cases_round6.py` writes tests/gpu/cases_h200_r6.json."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cases import L8, MI, Q7, Q3, Q15, G2, earlier_cases, infer, full, new_cases, trace_only, traced, with_predictions, write_cases  # noqa: E402
from cases_round2 import CATALOG, L3  # noqa: E402

TRACE_ONLY = [
    full(G2, batch=1, seq=3072, ckpt=True),
    full(G2, batch=1, seq=6144, ckpt=True),
]

# Traced after they were measured (tune split): the two LLM.int8 runs the outlier model
# missed most (Qwen3 8B: -11.4 %, Mistral 7B: -3.8 % of the committed predictions).
TRACE = ["infer-qwen3-8b-int8-b1-p2048-n32", "infer-mistral-7b-v0.3-int8-b1-p1024-n32"]
# and two steps of earlier tune-split fine-tunes of a tied model (Llama 3.2 1B), to check
# the tied output layer's transient and gradient sum the Gemma 2 histories show
TRACE_EARLIER = ["full-llama-3.2-1b-bf16-paged-adamw8bit-b8-s1024", "full-llama-3.2-1b-bf16-adamw-b8-s1024"]

CASES = [
    full(G2, batch=1, seq=8192, ckpt=True),
    full(G2, optim="adamw8bit", batch=1, seq=4096, ckpt=True),
    full(G2, batch=2, seq=3072, ckpt=True),
    infer(MI, dtype="int8", batch=1, prompt=1024, new=32),
    infer(Q7, dtype="int8", batch=1, prompt=512, new=32),
    infer(L3, dtype="int8", batch=1, prompt=512, new=32),
    infer(L8, dtype="int8", batch=2, prompt=256, new=32),
    infer(Q3, dtype="int8", batch=1, prompt=2048, new=32),
    infer(Q15, dtype="int8", batch=2, prompt=512, new=32),
]


def build() -> list[dict]:
    from calib_models import MODELS

    def config(m):
        return MODELS.get(m) or CATALOG[m]

    old = earlier_cases("cases.json", "cases_h200.json", "cases_h200_r3.json", "cases_h200_r4.json",
                        "cases_h200_r5.json")
    out = [trace_only(m, w, config(m), old) for m, w in TRACE_ONLY]
    out += with_predictions(new_cases(CASES, config, old), "cases_h200_r6.json")
    mine = {c["id"]: c for c in out}
    out += [traced({k: v for k, v in mine[cid].items() if k != "predicted_before"}) for cid in TRACE]
    return out + [traced(old[cid], trace_steps=2) for cid in TRACE_EARLIER]


if __name__ == "__main__":
    write_cases("cases_h200_r6.json", build())
