"""Round 5 of the GPU measurements (issue 6), on the H200: configurations measured after
every formula of round 4 was set (the GPT-2, LLM.int8 and Gemma 2 replays, the adapters'
reserve), to check them on runs nobody had looked at. The same hash splits them; none was
used to tune anything.

`python tests/gpu/cases_round5.py` writes tests/gpu/cases_h200_r5.json."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cases import L8, MI, G2, PHI, Q3, earlier_cases, infer, lora, full, new_cases, with_predictions, write_cases  # noqa: E402
from cases_round2 import CATALOG, L3, Q3B  # noqa: E402

CASES = [
    infer(MI, dtype="int8", batch=4, prompt=1024, new=64),
    infer("openai-community/gpt2-medium", batch=16, prompt=512, new=256),
    lora(Q3, r=32, targets="qv", batch=2, seq=1024, task="qlora"),
    lora(MI, r=16, targets="all", batch=2, seq=1024),
    full(G2, optim="adamw8bit", batch=2, seq=2048),
    infer(Q3B, dtype="int8", batch=8, prompt=1024, new=64),
    lora(PHI, r=8, targets="qv", batch=2, seq=1024, ckpt=True),
    infer(L3, dtype="nf4", batch=32, prompt=512, new=128),
    infer(L8, dtype="int8", batch=16, prompt=512, new=64),  # not run: the device time ran out
]


def build() -> list[dict]:
    from calib_models import MODELS

    old = earlier_cases("cases.json", "cases_h200.json", "cases_h200_r3.json", "cases_h200_r4.json")
    out = new_cases(CASES, lambda m: MODELS.get(m) or CATALOG[m], old)
    return with_predictions(out, "cases_h200_r5.json")


if __name__ == "__main__":
    write_cases("cases_h200_r5.json", build())
