"""Round 2 of the GPU measurements (issue 6), on the H200: configurations measured after the
estimator's formulas were set, including models and sizes that round 1 never ran (Llama 3.2
3B, Qwen3 0.6B, SmolLM2 360M, Qwen2.5 3B, TinyLlama, Mistral Nemo 12B, an 8B full
fine-tune). The same hash as round 1 holds a quarter of them out of any tuning.
`python tests/gpu/cases_round2.py` writes tests/gpu/cases_h200.json; the configs come from
the catalog rows (resources/models.json), each a copy of the model's published config.json.
Cases come in priority order: the device call runs them until its deadline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cases import L1, L8, Q05, Q7, Q3S, G2, G9, PHI, case_id, full, infer, lora, split_of  # noqa: E402

CATALOG = {r["id"]: r["config"] for r in json.loads(
    (Path(__file__).parents[2] / "resources" / "models.json").read_text())["models"]}
L3, Q06, SMOL360, Q3B = "meta-llama/Llama-3.2-3B", "Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolLM2-360M", "Qwen/Qwen2.5-3B"
TINY, NEMO = "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "mistralai/Mistral-Nemo-Base-2407"

CASES = [
    full(Q06, batch=16, seq=1024),
    full(L3, batch=2, seq=2048, ckpt=True),
    full(Q05, batch=8, seq=2048),
    full(G2, optim="adamw8bit", batch=4, seq=1024, ckpt=True),
    full(SMOL360, batch=16, seq=2048),
    full(Q3B, dtype="fp32", amp="bf16", batch=2, seq=1024),
    full(L8, optim="adamw8bit", batch=1, seq=1024, ckpt=True),
    full(PHI, batch=2, seq=1024, ckpt=True),
    lora(Q7, r=16, targets="qv", batch=8, seq=1024, ckpt=True),
    lora(L8, r=16, targets="all", batch=8, seq=2048, ckpt=True, task="qlora"),
    infer(L3, batch=64, prompt=512, new=128),
    infer(Q7, dtype="int8", batch=8, prompt=1024, new=64),
    full(TINY, optim="sgd-momentum", batch=8, seq=1024),
    infer(Q06, batch=32, prompt=2048, new=128),
    full(Q3S, batch=8, seq=1024, ckpt=True),
    lora(G9, r=32, targets="all", batch=2, seq=2048),
    infer(NEMO, batch=4, prompt=8192, new=64),
    full(L1, dtype="fp32", batch=8, seq=1024),
]
SNAPSHOT = {"full-qwen2.5-0.5b-bf16-adamw-b8-s2048", "full-llama-3.2-3b-bf16-adamw-b2-s2048-ckpt"}


def build() -> list[dict]:
    from calib_models import MODELS

    out = []
    for model, w in CASES:
        cid = case_id(model, w)
        out.append({"id": cid, "model": model, "config": MODELS.get(model) or CATALOG[model], "workload": w,
                    "split": split_of(cid), "record": False, "snapshot": cid in SNAPSHOT,
                    "steps": 1 if w["task"] == "infer" else 2, "warmup": 1})
    assert len({c["id"] for c in out}) == len(out)
    return out


if __name__ == "__main__":
    cases = build()
    Path(__file__).with_name("cases_h200.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} cases, {sum(c['split'] == 'holdout' for c in cases)} held out")
