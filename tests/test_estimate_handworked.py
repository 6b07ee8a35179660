"""The estimator against hand-worked cases, including the worked examples of the domain
notes the project started from (../shared/seeds)."""

import dataclasses

import pytest

from cardfit.core.errors import UsageError
from cardfit.core.estimate import estimator
from cardfit.core.estimate.estimator import estimate, kv_cache_bytes, NF4_DQ_EXTRA_BITS
from cardfit.core.estimate.solver import best_plans, max_batch, max_seq, plan_sentence
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.core.units import GiB

# LLaMA-7B (Touvron et al. 2023): 32 layers, hidden 4096, 32 heads (MHA), MLP 11008, vocab 32000.
LLAMA7B = ModelSpec(id="llama-7b", name="LLaMA-7B", source="test", model_type="llama",
                    architecture="LlamaForCausalLM", hidden_size=4096, num_layers=32, num_heads=32,
                    num_kv_heads=32, head_dim=128, intermediate_size=11008, vocab_size=32000,
                    max_position=2048)


def test_llama7b_param_count():
    assert LLAMA7B.param_counts().total == pytest.approx(6.738e9, rel=0.001)


@pytest.mark.parametrize("dtype,bpp", [("fp32", 4), ("bf16", 2), ("fp16", 2)])
def test_weight_bytes_per_dtype(dtype, bpp):
    e = estimate(LLAMA7B, Workload(task="infer", dtype=dtype, batch=1, prompt=16, new=1))
    assert e.component("weights") == LLAMA7B.param_counts().total * bpp


def test_int8_and_nf4_weights():
    pc = LLAMA7B.param_counts()
    rest = pc.total - pc.linear
    e8 = estimate(LLAMA7B, Workload(dtype="int8", prompt=16, new=1))
    assert e8.component("weights") == pc.linear * 1 + rest * 2
    e4 = estimate(LLAMA7B, Workload(dtype="nf4", prompt=16, new=1))
    assert e4.component("weights") == pc.linear // 2 + rest * 2


def test_nf4_double_quant_overhead_is_0127_bits():
    # QLoRA paper, section 3: 8/64 + 32/(64*256) = 0.127 bits per parameter.
    assert NF4_DQ_EXTRA_BITS == pytest.approx(0.127, abs=0.0005)
    e = estimate(LLAMA7B, Workload(dtype="nf4", prompt=16, new=1))
    linear = LLAMA7B.param_counts().linear
    assert e.component("quant_constants") == int(linear * NF4_DQ_EXTRA_BITS / 8)


def test_llama7b_kv_cache_batch64_2048_is_64_gib():
    # 2 x 32 layers x 4096 x 2048 tokens x 64 x 2 B = 64 GiB (the seeds' worked example).
    w = Workload(task="infer", dtype="fp16", batch=64, prompt=2048, new=0)
    assert kv_cache_bytes(LLAMA7B, w) == 64 * GiB


def test_gqa_shrinks_kv_cache_by_group_factor():
    gqa = dataclasses.replace(LLAMA7B, num_kv_heads=8)
    w = Workload(task="infer", batch=1, prompt=4096, new=0)
    assert kv_cache_bytes(LLAMA7B, w) == 4 * kv_cache_bytes(gqa, w)


def test_adamw_mixed_precision_is_16_bytes_per_param_of_model_state():
    # fp32 master weights (4) + fp32 grads (4) + two fp32 Adam states (8) = 16 B/param.
    e = estimate(LLAMA7B, Workload(task="full", dtype="fp32", amp="bf16", optim="adamw", batch=1, seq=16))
    p = LLAMA7B.param_counts().total
    states = e.component("weights") + e.component("optimizer")
    # gradients exist at the optimizer step (the peak for such a short sequence)
    assert e.peak_stage == "optimizer step"
    assert states + e.component("gradients") == 16 * p


@pytest.mark.parametrize("stage,expected_gb", [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_model_states(stage, expected_gb):
    # ZeRO paper (Rajbhandari et al. 2020) figure 1: 7.5B params, 64 GPUs, K=12:
    # 120 GB, 31.4 GB, 16.6 GB, 1.9 GB of model states per GPU.
    spec = ModelSpec(id="x", name="x", source="t", model_type="llama", architecture="x",
                     hidden_size=4096, num_layers=37, num_heads=32, num_kv_heads=32, head_dim=128,
                     intermediate_size=11008, vocab_size=32000)
    psi = spec.param_counts().total
    assert psi == pytest.approx(7.5e9, rel=0.05)
    if stage:
        w = Workload(task="full", dtype="bf16", optim="adamw", batch=1, seq=16, gpus=64, zero=stage)
    else:  # no ZeRO: mixed precision as torch runs it (fp32 master + autocast), 16 B/param
        w = Workload(task="full", dtype="fp32", amp="bf16", optim="adamw", batch=1, seq=16)
    e = estimate(spec, w)
    grads = (psi * 2 / (64 if stage >= 2 else 1)) if stage else psi * 4  # present at the optimizer step
    model_states = e.component("weights") + e.component("optimizer") + (e.component("gradients") or grads)
    assert model_states / 1e9 * 7.5e9 / psi == pytest.approx(expected_gb, rel=0.03)


def test_bigger_batch_never_needs_less_memory():
    last = 0
    for b in (1, 2, 4, 8, 16):
        t = estimate(LLAMA7B, Workload(task="lora", batch=b, seq=1024)).total_bytes
        assert t > last
        last = t


def test_gradient_checkpointing_saves_activation_memory():
    w = Workload(task="full", dtype="bf16", batch=8, seq=2048)
    assert estimate(LLAMA7B, w.with_(grad_ckpt=True)).component("activations") < \
        estimate(LLAMA7B, w).component("activations") / 4


def test_every_component_names_a_formula_and_a_source():
    for w in (Workload(), Workload(task="full", dtype="fp32", amp="bf16"), Workload(task="qlora"),
              Workload(task="galore", dtype="bf16"), Workload(task="full", dtype="bf16", gpus=4, zero=3)):
        for c in estimate(LLAMA7B, w).components:
            assert c.formula and c.source, c


def test_json_contract_has_total_ram_and_components():
    d = estimate(LLAMA7B, Workload(task="lora")).to_json()
    assert d["total_bytes"] == sum(d["components"].values())
    assert d["ram_bytes"] > 0 and isinstance(d["components"], dict)


def test_largest_batch_is_the_boundary():
    w = Workload(task="qlora", seq=1024, lora_targets="all", grad_ckpt=True)
    cap = 24 * GiB
    b = max_batch(LLAMA7B, w, cap)
    assert b >= 1
    assert estimate(LLAMA7B, w.with_(batch=b)).total_bytes <= cap
    assert estimate(LLAMA7B, w.with_(batch=b + 1)).total_bytes > cap


def test_longest_context_is_the_boundary_and_capped_by_the_model():
    w = Workload(task="infer", dtype="bf16", batch=1, new=128)
    s = max_seq(LLAMA7B, w, 80 * GiB)
    assert s == LLAMA7B.max_position - 128  # the model's own limit binds first
    s = max_seq(LLAMA7B, w, 14 * GiB)
    assert estimate(LLAMA7B, w.with_(prompt=s)).total_bytes <= 14 * GiB
    assert estimate(LLAMA7B, w.with_(prompt=s + 1)).total_bytes > 14 * GiB


def test_plans_rank_fitting_first_and_say_why():
    plans = best_plans(LLAMA7B, 24 * GiB, Workload(task="lora", batch=1, seq=1024))
    fits = [p.fits for p in plans]
    assert fits == sorted(fits, reverse=True)
    assert any(p.fits for p in plans)
    assert "fits with" in plan_sentence(plans)


def test_bad_workloads_are_usage_errors():
    with pytest.raises(UsageError, match="--batch"):
        Workload(batch=0)
    with pytest.raises(UsageError, match="--task"):
        Workload(task="pretrain")
    with pytest.raises(UsageError, match="qlora"):
        Workload(task="full", dtype="nf4")
    with pytest.raises(UsageError, match="--gpus"):
        Workload(task="full", zero=2)
