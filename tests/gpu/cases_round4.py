"""Round 4 of the GPU measurements (issue 6), on the H200: what the round-3 misses need.

- ``trace-`` cases (tune split, or configurations no measured case has) record the caching allocator's history: GPT-2's
  generate() at fp16 and fp32 (GPT-2 is not in the generate replay yet), LLM.int8 on the
  8B model (the 1B one is traced already), and two whole training steps ("trace_steps": 2,
  warm-up and first measured step) of a Gemma 2 full fine-tune and of two QLoRA runs: the
  second step's peak reserved is above the first's.
- new configurations of the same kinds, measured before the replays they check were
  written; the same hash as rounds 1-3 holds a quarter out.

`python tests/gpu/cases_round4.py` writes tests/gpu/cases_h200_r4.json."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cases import L1, L8, Q15, Q3S, MI, G2, PHI, GPT2, GPT2L, earlier_cases, infer, lora, full, new_cases, trace_only, traced, write_cases  # noqa: E402
from cases_round2 import CATALOG, Q06  # noqa: E402

GPT2M, GPT2XL = "openai-community/gpt2-medium", "openai-community/gpt2-xl"

TRACE = [
    ("infer-gpt2-fp16-b64-p512-n256", 1),
    ("infer-gpt2-large-fp32-b16-p512-n128", 1),
    ("infer-llama-3.1-8b-int8-b4-p2048-n64", 1),
    ("full-gemma-2-2b-bf16-adamw-b4-s1024", 2),
    ("qlora-mistral-7b-v0.3-r16-all-b4-s1024", 2),
    ("qlora-phi-3-mini-4k-instruct-r16-qv-b4-s2048", 2),
    ("lora-llama-3.1-8b-r16-qv-b4-s2048", 2),  # second call
    ("infer-qwen2.5-7b-int8-b8-p1024-n64", 1),  # third call: LLM.int8's reserve
    ("full-gemma-2-2b-bf16-adamw8bit-b4-s1024-ckpt", 2),  # fourth call: Gemma 2 with checkpointing
]

# Traced only (a second call, after the GPT-2 replay matched its traces): configurations of
# no measured case, on the paths whose replay no trace had checked yet (Qwen3's per-head
# q/k norms, sdpa's math kernel for fp32 with grouped-query attention, 4-bit weights with
# the q/k norms). They never enter the accuracy set.
TRACE_ONLY = [
    infer(Q06, batch=16, prompt=2048, new=128),
    infer(L1, dtype="fp32", batch=2, prompt=2048, new=64),
    infer(Q3S, dtype="nf4", batch=8, prompt=1024, new=64),
    # third call: LLM.int8 at batch 1, whose decode steps are single rows
    infer(L1, dtype="int8", batch=1, prompt=1024, new=32),
    infer(L8, dtype="int8", batch=1, prompt=512, new=32),
    # fourth call: a Gemma 2 full fine-tune with checkpointing, traced over two steps
    full(G2, batch=1, seq=2048, ckpt=True),
]

CASES = [
    # GPT-2's 1024 learned positions hold prompt + new tokens (a first try at 1024 + 128
    # ended in a device-side assert in the position embedding)
    infer(GPT2M, dtype="fp16", batch=32, prompt=768, new=128),
    infer(GPT2, batch=16, prompt=512, new=512),
    infer(GPT2L, batch=8, prompt=896, new=128),
    infer(GPT2XL, dtype="fp16", batch=4, prompt=960, new=64),
    lora(MI, r=32, targets="qv", batch=4, seq=1024, task="qlora"),
    lora(PHI, r=32, targets="all", batch=4, seq=1024, task="qlora"),
    full(G2, batch=2, seq=2048),
    infer(Q15, dtype="int8", batch=4, prompt=2048, new=64),
    infer(L8, dtype="int8", batch=2, prompt=4096, new=32),
    infer(Q3S, dtype="int8", batch=16, prompt=1024, new=64),
    lora(MI, r=8, targets="all", batch=2, seq=2048, task="qlora"),
    lora(PHI, r=16, targets="qv", batch=4, seq=2048),
    full(G2, batch=1, seq=4096, ckpt=True),
]


def build() -> list[dict]:
    from calib_models import MODELS

    old = earlier_cases("cases.json", "cases_h200.json", "cases_h200_r3.json")
    out = [traced(old[cid], trace_steps=steps) for cid, steps in TRACE]
    out += [trace_only(model, w, MODELS.get(model) or CATALOG[model], old) for model, w in TRACE_ONLY]
    out += new_cases(CASES, lambda m: MODELS.get(m) or CATALOG[m], old)
    assert len({c["id"] for c in out}) == len(out)
    return out


if __name__ == "__main__":
    write_cases("cases_h200_r4.json", build())
