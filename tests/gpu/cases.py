"""The GPU measurement matrix of the calibration (issue 6). `python tests/gpu/cases.py`
writes tests/gpu/cases.json, which tests/gpu/run_cases.py runs on the device machine,
one fresh process per case.

About a quarter of the cases are held out (``split: holdout``): chosen by a hash of the
case id before any measurement, and never looked at while tuning the estimator."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from calib_models import MODELS  # noqa: E402

L1, L8 = "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.1-8B"
Q05, Q15, Q7 = "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-7B"
Q3S, Q3 = "Qwen/Qwen3-1.7B", "Qwen/Qwen3-8B"
MI, G2, G9, PHI = "mistralai/Mistral-7B-v0.3", "google/gemma-2-2b", "google/gemma-2-9b", "microsoft/Phi-3-mini-4k-instruct"
GPT2, GPT2L = "openai-community/gpt2", "openai-community/gpt2-large"
OLMOE, QMOE, SMOL = "allenai/OLMoE-1B-7B-0924", "Qwen/Qwen1.5-MoE-A2.7B", "HuggingFaceTB/SmolLM2-1.7B"


def infer(model, dtype="bf16", batch=1, prompt=512, new=64, attn="sdpa"):
    return model, dict(task="infer", dtype=dtype, batch=batch, prompt=prompt, new=new, attn=attn)


def full(model, dtype="bf16", amp="none", optim="adamw", batch=4, seq=1024, ckpt=False, attn="sdpa"):
    return model, dict(task="full", dtype=dtype, amp=amp, optim=optim, batch=batch, seq=seq,
                       grad_ckpt=ckpt, attn=attn)


def lora(model, r=16, targets="qv", batch=4, seq=1024, ckpt=False, task="lora", attn="sdpa"):
    return model, dict(task=task, dtype="nf4" if task == "qlora" else "bf16", lora_r=r,
                       lora_targets=targets, batch=batch, seq=seq, grad_ckpt=ckpt, attn=attn)


CASES = [
    # ---- inference ----
    infer(L8, batch=1, prompt=512, new=64),
    infer(L8, batch=1, prompt=4096, new=128),
    infer(L8, batch=8, prompt=2048, new=128),
    infer(L8, batch=32, prompt=1024, new=64),
    infer(L8, batch=1, prompt=32768, new=32),
    infer(L8, dtype="fp16", batch=4, prompt=2048, new=64),
    infer(L8, dtype="int8", batch=1, prompt=1024, new=32),
    infer(L8, dtype="nf4", batch=4, prompt=2048, new=64),
    infer(L1, dtype="fp32", batch=4, prompt=2048, new=64),
    infer(L1, batch=4, prompt=4096, new=64, attn="eager"),
    infer(L1, dtype="int8", batch=8, prompt=1024, new=64),
    infer(Q7, batch=16, prompt=2048, new=128),
    infer(Q05, batch=64, prompt=1024, new=128),
    infer(Q3, batch=2, prompt=8192, new=64),
    infer(MI, batch=4, prompt=4096, new=256),
    infer(G9, batch=2, prompt=4096, new=64),
    infer(G2, batch=8, prompt=2048, new=64, attn="eager"),
    infer(PHI, batch=8, prompt=2048, new=128),
    infer(GPT2L, dtype="fp32", batch=16, prompt=512, new=128),
    infer(OLMOE, batch=4, prompt=2048, new=64),
    infer(QMOE, batch=2, prompt=2048, new=64),
    infer(SMOL, dtype="nf4", batch=8, prompt=1024, new=64),
    infer(Q15, dtype="fp4", batch=4, prompt=4096, new=64),
    # ---- full fine-tuning ----
    full(L1, dtype="fp32", batch=4, seq=512),
    full(L1, dtype="fp32", amp="bf16", batch=4, seq=1024),
    full(L1, dtype="fp32", amp="fp16", batch=2, seq=1024),
    full(L1, batch=8, seq=1024),
    full(L1, optim="adamw8bit", batch=8, seq=1024),
    full(L1, optim="paged-adamw8bit", batch=8, seq=1024),
    full(L1, optim="sgd", batch=8, seq=1024),
    full(L1, optim="sgd-momentum", batch=4, seq=2048),
    full(L1, batch=16, seq=2048, ckpt=True),
    full(L1, batch=4, seq=1024, attn="eager"),
    full(L1, optim="adafactor", batch=4, seq=1024),
    full(L1, optim="lion", batch=4, seq=1024),
    full(Q15, dtype="fp32", amp="bf16", batch=2, seq=1024),
    full(Q15, batch=8, seq=2048, ckpt=True),
    full(Q05, dtype="fp32", batch=8, seq=1024),
    full(G2, batch=2, seq=1024),
    full(GPT2, dtype="fp32", batch=16, seq=1024),
    full(GPT2L, batch=8, seq=1024),
    full(SMOL, batch=4, seq=2048, ckpt=True),
    full(Q3S, batch=4, seq=1024),
    full(PHI, optim="adamw8bit", batch=4, seq=1024, ckpt=True),
    full(OLMOE, optim="adamw8bit", batch=2, seq=1024),
    (L1, dict(task="galore", dtype="bf16", optim="adamw", galore_rank=128, batch=4, seq=1024)),
    (Q15, dict(task="galore", dtype="bf16", optim="adamw8bit", galore_rank=256, batch=4, seq=1024)),
    # ---- LoRA ----
    lora(L8, r=16, targets="qv", batch=1, seq=512),
    lora(L8, r=16, targets="qv", batch=4, seq=2048),
    lora(L8, r=64, targets="all", batch=2, seq=1024),
    lora(L8, r=8, targets="qkvo", batch=8, seq=1024, ckpt=True),
    lora(L8, r=16, targets="qv", batch=16, seq=512, ckpt=True),
    lora(L8, r=32, targets="all", batch=1, seq=4096),
    lora(Q7, r=16, targets="all", batch=4, seq=1024),
    lora(MI, r=16, targets="qv", batch=2, seq=2048),
    lora(G9, r=16, targets="qv", batch=1, seq=2048),
    lora(PHI, r=16, targets="all", batch=8, seq=1024),
    lora(Q3, r=8, targets="qv", batch=4, seq=2048, ckpt=True),
    lora(L1, r=16, targets="qv", batch=4, seq=2048, attn="eager"),
    # ---- QLoRA ----
    lora(L8, r=16, targets="qv", batch=1, seq=512, task="qlora"),
    lora(L8, r=64, targets="all", batch=4, seq=2048, ckpt=True, task="qlora"),
    lora(L8, r=16, targets="qv", batch=16, seq=1024, ckpt=True, task="qlora"),
    lora(L8, r=8, targets="all", batch=2, seq=4096, task="qlora"),
    lora(Q7, r=16, targets="all", batch=4, seq=1024, task="qlora"),
    lora(MI, r=32, targets="qv", batch=8, seq=512, task="qlora"),
    lora(G9, r=16, targets="all", batch=2, seq=1024, ckpt=True, task="qlora"),
    lora(PHI, r=16, targets="qv", batch=4, seq=2048, task="qlora"),
    lora(Q3, r=16, targets="all", batch=1, seq=4096, task="qlora"),
]

# Runs that must run out of memory on an 80 GB card (not part of the accuracy set).
OOM_CASES = [
    full(L8, dtype="fp32", batch=1, seq=512),
]

# Streams kept whole for the live-panel replay tests and the docs (issue 5).
RECORD = {"full-llama-3.2-1b-bf16-adamw-b8-s1024", "lora-llama-3.1-8b-r16-qv-b4-s2048",
          "qlora-llama-3.1-8b-r16-qv-b1-s512", "infer-llama-3.1-8b-bf16-b8-p2048-n128",
          "oom-full-llama-3.1-8b-fp32-adamw-b1-s512"}


def case_id(model: str, w: dict, prefix: str = "") -> str:
    m = model.split("/")[-1].lower()
    t = w["task"]
    if t == "infer":
        core = f"infer-{m}-{w['dtype']}-b{w['batch']}-p{w['prompt']}-n{w['new']}"
    elif t == "galore":
        core = f"galore-{m}-r{w['galore_rank']}-{w['optim']}-b{w['batch']}-s{w['seq']}"
    elif t == "full":
        prec = f"{w['dtype']}+{w['amp']}" if w["amp"] != "none" else w["dtype"]
        core = f"full-{m}-{prec}-{w['optim']}-b{w['batch']}-s{w['seq']}"
    else:
        core = f"{t}-{m}-r{w['lora_r']}-{w['lora_targets']}-b{w['batch']}-s{w['seq']}"
    if w.get("grad_ckpt"):
        core += "-ckpt"
    if w.get("attn", "sdpa") != "sdpa":
        core += "-" + w["attn"]
    return prefix + core


def split_of(cid: str) -> str:
    return "holdout" if hashlib.sha256(cid.encode()).digest()[0] % 4 == 0 else "tune"


def new_case(model: str, w: dict, config: dict) -> dict:
    """A case of a later round: measured once, split by the hash of its id."""
    cid = case_id(model, w)
    return {"id": cid, "model": model, "config": config, "workload": w, "split": split_of(cid),
            "record": False, "steps": 1 if w["task"] == "infer" else 2, "warmup": 1}


def new_cases(items, config_of, old: dict) -> list[dict]:
    """``new_case`` for each (model, workload), none of them an earlier round's."""
    out = [new_case(model, w, config_of(model)) for model, w in items]
    again = [c["id"] for c in out if c["id"] in old]
    assert not again, again
    return out


def traced(case: dict, **extra) -> dict:
    """A tune-split case of an earlier round run again with the allocator's history recorded
    (child.py's spec key "trace"); held-out cases are never traced."""
    assert case["split"] == "tune", case["id"]
    return {**case, "id": "trace-" + case["id"], "split": "trace", "trace": True, **extra, "snapshot": False}


def trace_only(model: str, w: dict, config: dict, old: dict) -> dict:
    """A configuration no measured case has, run once with the allocator's history recorded
    (two steps of a training run: warm-up and the first measured one); it never enters
    the accuracy set."""
    cid = case_id(model, w)
    assert cid not in old, cid
    return {"id": "trace-" + cid, "model": model, "config": config, "workload": w, "split": "trace",
            "trace": True, "record": False, "warmup": 1,
            **({"steps": 1} if w["task"] == "infer" else {"steps": 2, "trace_steps": 2})}


def with_predictions(cases: list[dict], name: str) -> list[dict]:
    """Each case with the estimate written into the case file before the run (committed
    first, then measured): ``predicted_before``, bytes. A case already in tests/gpu/NAME keeps
    the prediction written there: it is made once, by the estimator of its time."""
    from cardfit.core.estimate.estimator import estimate
    from cardfit.core.estimate.workload import Workload
    from cardfit.core.specs.hf_config import spec_from_config

    path = Path(__file__).parent / name
    written = {c["id"]: c["predicted_before"] for c in (json.loads(path.read_text()) if path.exists() else [])
               if "predicted_before" in c}

    def predict(c: dict) -> int:
        if c["id"] in written:
            return written[c["id"]]
        spec = spec_from_config(c["config"], source=c["model"], id=c["model"])
        return estimate(spec, Workload(**c["workload"])).total_bytes

    return [{**c, "predicted_before": predict(c)} for c in cases]


def write_cases(name: str, cases: list[dict]) -> None:
    """Writes a round's case file (tests/gpu/NAME) and says what it holds."""
    (Path(__file__).parent / name).write_text(json.dumps(cases, indent=1) + "\n")
    new = [c for c in cases if c["split"] != "trace"]
    print(f"{len(cases) - len(new)} traced, {len(new)} new, {sum(c['split'] == 'holdout' for c in new)} held out")


def earlier_cases(*names: str) -> dict[str, dict]:
    """The cases of earlier rounds' files (tests/gpu/NAME), by id."""
    return {c["id"]: c for f in names for c in json.loads((Path(__file__).parent / f).read_text())}


def build() -> list[dict]:
    out = []
    for group, items in (("", CASES), ("oom-", OOM_CASES)):
        for model, w in items:
            cid = case_id(model, w, group)
            out.append({"id": cid, "model": model, "config": MODELS[model], "workload": w,
                        "split": "oom" if group else split_of(cid), "record": cid in RECORD,
                        "steps": 1 if w["task"] == "infer" else 2, "warmup": 1})
    ids = [c["id"] for c in out]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return out


if __name__ == "__main__":
    cases = build()
    Path(__file__).with_name("cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    n_hold = sum(c["split"] == "holdout" for c in cases)
    print(f"{len(cases)} cases, {n_hold} held out")
