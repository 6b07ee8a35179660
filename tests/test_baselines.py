"""The public estimators of tests/gpu/baselines.py, worked by hand on Llama-2-7B (and
Llama-3.1-8B where a tool cannot take Llama-2), each step written out from the tool's
published formula, plus the accuracy-table generator (tools/accuracy_table.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "gpu"))
import baselines as B  # noqa: E402

MiB = 1 << 20

# https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json
LLAMA2_7B = dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                 max_position_embeddings=4096, tie_word_embeddings=False, rms_norm_eps=1e-5,
                 torch_dtype="float16")
# https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
LLAMA31_8B = dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                  max_position_embeddings=131072, tie_word_embeddings=False, torch_dtype="bfloat16")

# Llama-2-7B by hand: embedding 32000*4096 = 131_072_000; per layer 4*4096^2 (q,k,v,o)
# + 3*4096*11008 (MLP) + 2*4096 (norms) = 202_383_360; 32 layers; final norm 4096.
L2_BASE = 131_072_000 + 32 * 202_383_360 + 4096  # headless AutoModel
L2_TOTAL = L2_BASE + 131_072_000  # + untied lm_head
assert L2_TOTAL == 6_738_415_616  # the published parameter count


def rec(config: dict, **workload) -> dict:
    return {"id": "hand", "model": "hand", "config": config, "workload": workload}


def test_parameter_counts_by_hand():
    c = B.param_counts(LLAMA2_7B)
    assert (c["total"], c["base"], c["lm_head"]) == (L2_TOTAL, L2_BASE, 131_072_000)
    assert c["largest_module"] == 131_072_000  # embed_tokens / lm_head


def _measured() -> list[dict]:
    out = []
    for f in sorted((ROOT / "tests" / "data").glob("gpu_measure_h100_*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return [r for r in out if (r.get("result") or {}).get("status") == "ok"]


def test_parameter_counts_match_the_models_that_ran():
    # built.params is sum(p.numel()) of the real model on the GPU; bitsandbytes packs
    # quantized weights, so only unquantized runs can be compared.
    runs = [r for r in _measured() if r["workload"].get("dtype", "bf16") in ("fp32", "bf16", "fp16")]
    assert runs
    for r in runs:
        assert B.param_counts(r["config"])["total"] == r["built"]["params"], r["id"]


# ---- Accelerate ----------------------------------------------------------------------------


def test_accelerate_by_hand():
    fp32 = 4 * L2_BASE  # AutoModel in float32: no lm_head
    assert B.accelerate_estimate_memory(rec(LLAMA2_7B, task="infer", dtype="fp32")) == fp32
    assert B.accelerate_estimate_memory(rec(LLAMA2_7B, task="infer", dtype="bf16")) == 13_214_687_232 == fp32 // 2
    assert B.accelerate_estimate_memory(rec(LLAMA2_7B, task="infer", dtype="int8")) == fp32 // 4
    assert B.accelerate_estimate_memory(rec(LLAMA2_7B, task="infer", dtype="nf4")) == fp32 // 8
    # "float32": step = 4 x the fp32 size is the largest of model / grads / optimizer / step.
    assert B.accelerate_estimate_memory(rec(LLAMA2_7B, task="full", dtype="fp32")) == 105_717_497_856
    # "float16": optimizer = 2 x the fp32 size is the largest.
    assert B.accelerate_estimate_memory(rec(LLAMA2_7B, task="full", dtype="bf16")) == 52_858_748_928
    assert B.accelerate_estimate_memory(rec(LLAMA2_7B, task="full", dtype="fp32", amp="bf16")) == 2 * fp32
    for w in (dict(task="full", optim="sgd"), dict(task="lora"), dict(task="qlora"), dict(task="galore")):
        assert B.accelerate_estimate_memory(rec(LLAMA2_7B, **w)) is None, w


# ---- DeepSpeed -------------------------------------------------------------------------------


def test_deepspeed_by_hand():
    # One GPU, no ZeRO: stage-2 formula with 1 GPU = 2 P + 18 P.
    assert B.deepspeed_model_states(rec(LLAMA2_7B, task="full")) == 20 * L2_TOTAL == 134_768_312_320
    # ZeRO-2 over 4 GPUs: 2 P + 18 P / 4.
    z2 = rec(LLAMA2_7B, task="full", gpus=4, zero=2)
    assert B.deepspeed_model_states(z2) == 2 * L2_TOTAL + 18 * L2_TOTAL // 4 == 43_799_701_504
    assert B.deepspeed_model_states(rec(LLAMA2_7B, task="full", gpus=4, zero=2, offload="optimizer")) == 2 * L2_TOTAL
    # ZeRO-3 over 4 GPUs: 4 x largest layer (the 32000 x 4096 embedding) + 18 P / 4.
    z3 = rec(LLAMA2_7B, task="full", gpus=4, zero=3)
    assert B.deepspeed_model_states(z3) == 4 * 131_072_000 + 18 * L2_TOTAL // 4 == 30_847_158_272
    assert B.deepspeed_model_states(rec(LLAMA2_7B, task="full", gpus=4, fsdp="full", offload="params")) == 524_288_000
    for w in (dict(task="infer"), dict(task="full", optim="adamw8bit"), dict(task="lora")):
        assert B.deepspeed_model_states(rec(LLAMA2_7B, **w)) is None, w


# ---- gpu_poor -----------------------------------------------------------------------------------

# computeModelSize: vocab*h*2 + L*4*h^2 + L*3*inter*h (no lm_head/embedding split, MHA assumed)
GP_P = 32000 * 4096 * 2 + 32 * 4 * 4096**2 + 32 * 3 * 11008 * 4096
assert GP_P == 6_738_149_376
GP_MODEL_MIB = GP_P * 2 / MiB  # = 12852.0 exactly
# getActivationMemory, one layer at len = 512 (sequence 511 + 1 generated), 2 bytes:
GP_ATTN = 512 * 4096 * 3 * 2 + 512 * 4096 * 2 * 2 + 512**2 * 32 * 2 + 512**2 * 32 * 4 + 512**2 * 32 * 2 + 512 * 4096 * 2 * 3
GP_FFN = 4096 * 512 * 2 * 2 + 2 * 5 * 512 * 11008 + 11008 * 512 * 2
GP_NORM = 512 * 4 * 2 + 512 * 4096 * 2 * 6
assert (GP_ATTN, GP_FFN, GP_NORM) == (100_663_296, 76_021_760, 25_169_920)
GP_ACT_MIB = 32 * (GP_ATTN + GP_FFN + GP_NORM) / MiB  # 6160.125


def test_gpu_poor_inference_by_hand():
    # context 512 + 512: KV 2*1024*2*2*4096*32 B = 1024 MiB; activations
    # (1024*4096*5*2 + 1024^2*32*2) B = 104 MiB; overhead 650 MiB.
    total = 1024 + GP_MODEL_MIB + 650 + 104
    assert total == 14630.0
    r = rec(LLAMA2_7B, task="infer", dtype="bf16", batch=1, prompt=512, new=512)
    assert B.gpu_poor(r) == 14630 * MiB
    # int8: size / 2, + 6 % of the 16-bit size.
    r8 = rec(LLAMA2_7B, task="infer", dtype="int8", batch=1, prompt=512, new=512)
    assert B.gpu_poor(r8) == math.ceil(1024 + GP_MODEL_MIB / 2 + 0.06 * GP_MODEL_MIB + 650 + 104) * MiB
    assert B.gpu_poor(rec(LLAMA2_7B, task="infer", dtype="fp32")) is None  # 2 bytes per value only


def test_gpu_poor_training_by_hand():
    # Full, Adam: params x 3 x 2 bytes on top of the 16-bit model.
    full = rec(LLAMA2_7B, task="full", dtype="bf16", batch=1, seq=511)
    expect = math.ceil(GP_MODEL_MIB + GP_P * 6 / MiB + GP_ACT_MIB + 650)
    assert expect == 58219
    assert B.gpu_poor(full) == expect * MiB
    ckpt = rec(LLAMA2_7B, task="full", dtype="bf16", batch=1, seq=511, grad_ckpt=True)
    assert B.gpu_poor(ckpt) == math.ceil(GP_MODEL_MIB + GP_P * 6 / MiB + 0.15 * GP_ACT_MIB + 650) * MiB
    # QLoRA, Adam: model size/4 - P*2/64 MiB + 6 %; L*8*h*0.5*4*3 + getExtraMemory.
    common = (10 * 4096 + 5 * 4096 + 4 * 11008 + 2 * 11008) * 32
    extra = 0.75 * common * 50 * math.sqrt(512 / 50)
    qmodel = GP_MODEL_MIB / 4 - GP_P * 2 / (64 * MiB) + 0.06 * GP_MODEL_MIB
    qlora = rec(LLAMA2_7B, task="qlora", batch=1, seq=511)
    expect = math.ceil(qmodel + (32 * 8 * 4096 * 0.5 * 4 * 3 + extra) / MiB + GP_ACT_MIB + 650)
    assert expect == 11067
    assert B.gpu_poor(qlora) == expect * MiB
    # LoRA (16-bit), Adam: L*8*h*2*4*3*2, whatever the rank.
    lora = rec(LLAMA2_7B, task="lora", batch=1, seq=511, lora_r=64)
    assert B.gpu_poor(lora) == math.ceil(GP_MODEL_MIB + 32 * 8 * 4096 * 2 * 4 * 3 * 2 / MiB + GP_ACT_MIB + 650) * MiB
    for w in (dict(task="full", dtype="fp32"), dict(task="full", optim="lion"), dict(task="galore")):
        assert B.gpu_poor(rec(LLAMA2_7B, **w)) is None, w


# ---- asmirnov ------------------------------------------------------------------------------------


def test_asmirnov_by_hand():
    # One layer's activations at b=1, s=1024, 2 bytes, head_dim 128:
    attention = (2 * 1024 * 4096 * 5          # input, q, k, v, out-projection input
                 + 2 * 32 * 1024**2 * 2       # softmax output, dropout output
                 + 32 * 1024**2               # softmax dropout mask (1 byte)
                 + 1024 * 4096)               # attention dropout mask
    mlp = 2 * 1024 * 4096 + 2 * 2 * 1024 * 11008 + 1024 * 4096
    norms = 2 * 1024 * 4096 * 2
    layer = attention + mlp + norms
    assert layer == 275 * MiB
    # Inference, half precision: 1000 MiB kernels + 2 P + outputs 4*1024*32000 B + one layer.
    assert 4 * 1024 * 32000 == 125 * MiB
    infer = rec(LLAMA2_7B, task="infer", dtype="bf16", batch=1, prompt=512, new=512)
    assert B.asmirnov_vram(infer) == (1000 + round(2 * L2_TOTAL / MiB) + 125 + 275) * MiB == 14253 * MiB
    # Mixed-precision training, Adam: 6 P + outputs x 2 + all 32 layers + fp32 grads and 2 moments.
    full = rec(LLAMA2_7B, task="full", dtype="fp32", amp="bf16", batch=1, seq=1024)
    expect = 1000 + round(6 * L2_TOTAL / MiB) + 250 + 32 * 275 + 3 * round(4 * L2_TOTAL / MiB)
    assert expect == 125_723
    assert B.asmirnov_vram(full) == expect * MiB
    # Full precision, SGD with momentum: 4 P, fp32 activations, grads + one moment.
    sgd = rec(LLAMA2_7B, task="full", dtype="fp32", optim="sgd-momentum", batch=1, seq=1024)
    masks = 32 * 1024**2 + 2 * 1024 * 4096  # the 1-byte dropout masks: 40 MiB of the 275
    layer32 = 2 * (layer - masks) + masks  # everything else doubles in fp32
    assert layer32 == 510 * MiB
    expect = 1000 + round(4 * L2_TOTAL / MiB) + 250 + 32 * 510 + 2 * round(4 * L2_TOTAL / MiB)
    assert B.asmirnov_vram(sgd) == expect * MiB
    for w in (dict(task="infer", dtype="int8"), dict(task="lora"), dict(task="full", optim="adafactor")):
        assert B.asmirnov_vram(rec(LLAMA2_7B, **w)) is None, w


# ---- llm-analysis ----------------------------------------------------------------------------------


def test_llm_analysis_stops_where_the_tool_asserts():
    # Llama-2-7B is multi-head with a 2.6875x ungated MLP: its FLOPs check fails.
    assert B.llm_analysis(rec(LLAMA2_7B, task="infer", batch=1, prompt=512, new=64)) is None
    assert B.llm_analysis(rec(LLAMA2_7B, task="full", batch=1, seq=512)) is None
    # Longer than max_position_embeddings.
    assert B.llm_analysis(rec(LLAMA31_8B, task="infer", prompt=200_000, new=1)) is None


# Llama-3.1-8B as llm-analysis counts it: attention 2h^2 + 2h*(h*8/32); gated MLP (14336 /
# 4096 = 3.5) 3*h*14336; 2h of norms; one embedding 128256*4096; a final norm.
LA_LAYER = 2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
LA_N = 32 * LA_LAYER + 128256 * 4096 + 4096
assert (LA_LAYER, LA_N) == (218_112_000, 7_504_924_672)


def test_llm_analysis_inference_by_hand():
    weights = 2 * LA_N
    kv = 2 * 1 * (512 + 64) * 128 * 8 * 2 * 32
    # Prefill: per layer max(attn 3*2*512*4096, MLP 2*3.5*512*4096, norm) < logits 128256*512*2.
    assert max(3 * 2 * 512 * 4096, 7 * 512 * 4096, 2 * 512 * 4096) < 128256 * 512 * 2
    prefill = 128256 * 512 * 2
    r = rec(LLAMA31_8B, task="infer", dtype="bf16", batch=1, prompt=512, new=64)
    assert B.llm_analysis(r) == weights + kv + prefill == 15_216_680_960
    r4 = rec(LLAMA31_8B, task="infer", dtype="nf4", batch=1, prompt=512, new=64)
    weights4 = 2 * 128256 * 4096 + (32 * LA_LAYER + 4096) * 0.5  # w4a16e16: the embedding stays 16-bit
    assert B.llm_analysis(r4) == int(weights4 + kv + prefill)


def test_llm_analysis_training_by_hand():
    # Pure bf16, AdamW: master 2 bytes + 2 states x 2 bytes; weights 2; gradients 2.
    opt, weights, grads = 6 * LA_N, 2 * LA_N, 2 * LA_N
    s, h = 512, 4096
    attn = 5 * s * h * 2 + (2 * s * h + 4 * 32 * s) * 2 + s * h  # flash: no s^2 term
    mlp = s * h * 2 + 2 * 2 * 3.5 * s * h
    act = 32 * (attn + mlp + 2 * s * h * 4) + h * s * 2 + 128256 * s * 2 + s * h * 4
    assert act < grads
    prefetch = 2 * LA_LAYER * 2
    assert prefetch > 128256 * s * 2  # > the logits gradient
    r = rec(LLAMA31_8B, task="full", dtype="bf16", batch=1, seq=512)
    assert B.llm_analysis(r) == opt + weights + grads + prefetch == 75_921_694_720
    # fp32 master + bf16 autocast, Lion: master 4 + 1 state of 4; gradients 4 bytes.
    lion = rec(LLAMA31_8B, task="full", dtype="fp32", amp="bf16", optim="lion", batch=1, seq=512)
    assert B.llm_analysis(lion) == 8 * LA_N + 2 * LA_N + 4 * LA_N + prefetch
    for w in (dict(task="full", dtype="fp32"), dict(task="lora"), dict(task="full", optim="adafactor")):
        assert B.llm_analysis(rec(LLAMA31_8B, **w)) is None, w


def test_every_baseline_answers_every_measured_case():
    for r in _measured():
        for name, f in B.BASELINES.items():
            v = f(r)
            assert v is None or (isinstance(v, int) and v > 0), (name, r["id"], v)
    assert set(B.NOT_MODELED) == set(B.BASELINES)


# ---- the table generator ---------------------------------------------------------------------------


def _tool():
    spec = importlib.util.spec_from_file_location("accuracy_table", ROOT / "tools" / "accuracy_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_summary_statistics():
    t = _tool()
    s = t.summarize([-6.0, 2.0, 4.0, -1.0, 10.0])
    assert s["n"] == 5 and s["median"] == 4.0 and s["p90"] == 10.0 and s["worst_under"] == -6.0
    assert t.summarize([1.0, 3.0])["worst_under"] is None
    assert t.summarize([])["n"] == 0


def test_table_writes_markdown_for_every_task(tmp_path):
    t = _tool()
    src = ROOT / "tests" / "data" / "gpu_measure_h100_part1.jsonl"
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(src, data / src.name)
    (data / "gpu_measure_h100_other.txt").write_text("not a measurement")
    out = tmp_path / "accuracy.md"
    assert t.main(["--data", str(data), "--write", str(out)]) == 0
    md = out.read_text()
    records = t.load_records(data)
    tasks = {r["workload"]["task"] for r in records}
    assert "### All tasks" in md
    assert ("### Inference" in md) == ("infer" in tasks)
    assert ("### GaLore" in md) == ("galore" in tasks)
    assert "### LoRA" not in md or "lora" in tasks
    for name in B.BASELINES:
        assert f"| {name} |" in md
    assert "**cardfit (held-out cases)**" in md
    # Every case is listed once in the details table.
    for r in records:
        assert md.count(f"| {r['id']} |") == 1
    assert t.main(["--data", str(tmp_path / "empty")]) == 2


def test_readme_accuracy_tables_are_the_current_ones():
    # The README quotes the estimator's measured accuracy: regenerate it with
    # `tools/accuracy_table.py --readme README.md` whenever the estimator or the data change.
    t = _tool()
    readme = (ROOT / "README.md").read_text()
    block = readme.split(t.BEGIN, 1)[1].split(t.END, 1)[0]
    assert block.strip() == t.build_markdown(t.load_records()).strip()


def test_readme_block_is_replaced_whole(tmp_path):
    t = _tool()
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{t.BEGIN}\nstale\n{t.END}\nafter\n")
    assert t.main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "stale" not in text and text.startswith("# x\n\nbefore\n") and text.endswith(f"{t.END}\nafter\n")
    assert "## Measured accuracy" in text
    (tmp_path / "plain.md").write_text("no markers")
    assert t.main(["--readme", str(tmp_path / "plain.md")]) == 2
