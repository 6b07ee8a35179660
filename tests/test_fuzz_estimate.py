"""Property tests: the estimator and the solvers on extreme-but-valid models and workloads
(every size at the edges spec_from_config and Workload accept) never crash (no division by
zero, no overflow, no NaN) and give whole, non-negative byte counts."""

from __future__ import annotations

import json
import math

import pytest

from hypothesis import assume, given
from hypothesis import strategies as st

from cardfit.core.errors import ModelSpecError, UsageError
from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.result import judge
from cardfit.core.estimate.solver import best_plans, fit_matrix, max_batch, max_seq, plan_sentence
from cardfit.core.estimate.workload import AMPS, ATTNS, DTYPES, LORA_TARGETS, OFFLOADS, OPTIMS, TASKS, Workload
from cardfit.core.specs.hf_config import (
    KNOWN, MAX_EXPERTS, MAX_HIDDEN, MAX_LAYERS, MAX_POSITION, MAX_VOCAB, spec_from_config,
)
from fuzzing import examples


def edge(lo: int, hi: int):
    """Integers in [lo, hi], the edges and powers of two favoured."""
    specials = sorted({v for v in (lo, lo + 1, hi, hi - 1, 2, 3, 7, 64, 4096) if lo <= v <= hi})
    return st.one_of(st.sampled_from(specials), st.integers(lo, hi))


@st.composite
def extreme_specs(draw):
    heads = draw(edge(1, 1024))
    kv = draw(st.sampled_from([d for d in range(1, heads + 1) if heads % d == 0][:12] + [heads]))
    head_dim = draw(edge(1, 4096))
    hidden = draw(st.one_of(st.just(heads * head_dim), edge(heads, MAX_HIDDEN)))
    cfg = {
        "model_type": draw(st.sampled_from(sorted(KNOWN) + ["unknown_arch"])),
        "hidden_size": hidden, "num_hidden_layers": draw(edge(1, MAX_LAYERS)),
        "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim,
        "intermediate_size": draw(edge(1, MAX_HIDDEN * 16)), "vocab_size": draw(edge(1, MAX_VOCAB)),
        "max_position_embeddings": draw(edge(1, MAX_POSITION)),
        "tie_word_embeddings": draw(st.booleans()), "torch_dtype": draw(st.sampled_from(["bfloat16", "float32"])),
    }
    if draw(st.booleans()):
        experts = draw(edge(1, MAX_EXPERTS))
        cfg.update(num_local_experts=experts, num_experts_per_tok=draw(edge(1, experts)),
                   moe_intermediate_size=draw(edge(1, MAX_HIDDEN)))
    if draw(st.integers(0, 3)) == 0:
        cfg.update(kv_lora_rank=draw(edge(1, 4096)), qk_rope_head_dim=draw(edge(1, 256)),
                   qk_nope_head_dim=draw(edge(0, 256)), v_head_dim=draw(edge(1, 256)), model_type="deepseek_v2")
    if draw(st.integers(0, 3)) == 0:
        cfg["sliding_window"] = draw(edge(1, MAX_POSITION))
    try:
        return spec_from_config(cfg, source="extreme.json")
    except ModelSpecError:
        assume(False)


@st.composite
def workloads(draw):
    task = draw(st.sampled_from(TASKS))
    amp = draw(st.sampled_from(AMPS)) if task == "full" else "none"  # autocast is full fine-tuning's
    dtype = "fp32" if amp != "none" else draw(st.sampled_from(DTYPES))
    kw = dict(task=task, dtype=dtype, amp=amp, optim=draw(st.sampled_from(OPTIMS)),
              batch=draw(edge(1, 1 << 20)), seq=draw(edge(1, 1 << 24)), prompt=draw(edge(1, 1 << 24)),
              new=draw(edge(0, 1 << 24)), kv_dtype=draw(st.sampled_from([None, "fp32", "fp8", "int4"])),
              grad_ckpt=draw(st.booleans()), grad_accum=draw(edge(1, 1 << 20)),
              attn=draw(st.sampled_from(ATTNS)), lora_r=draw(edge(1, 1 << 16)),
              lora_targets=draw(st.sampled_from(LORA_TARGETS)), galore_rank=draw(edge(1, 1 << 16)),
              frozen_layers=draw(edge(0, 1 << 20)), quant_group_size=draw(edge(1, 1 << 16)),
              gpus=draw(edge(1, 1 << 12)), zero=draw(st.sampled_from([0, 0, 1, 2, 3])),
              offload=draw(st.sampled_from(OFFLOADS)))
    try:
        return Workload(**kw)
    except UsageError:
        assume(False)


def sane(e) -> None:
    assert isinstance(e.total_bytes, int) and e.total_bytes >= 0
    for c in list(e.components) + list(e.ram_components):
        assert isinstance(c.bytes, int), c
        assert c.bytes >= 0, c
    json.dumps(e.to_json(), allow_nan=False)


@examples(250)
@given(extreme_specs(), workloads())
def test_estimate_never_crashes(spec, w):
    e = estimate(spec, w)
    sane(e)
    assert e.total_bytes >= sum(c.bytes for c in e.components) * 0  # computed, whatever its size


@examples(60)
@given(extreme_specs(), workloads(), st.one_of(st.sampled_from([0, 1, 2**30, 80 * 2**30, 2**62]),
                                                st.integers(0, 2**50)))
def test_solvers_never_crash(spec, w, available):
    b = max_batch(spec, w, available)
    assert 0 <= b <= 4096
    s = max_seq(spec, w, available)
    assert s == 0 or 128 <= s <= min(max(128, spec.max_position), 1 << 24)
    plans = best_plans(spec, available, w, "card")
    assert isinstance(plan_sentence(plans), str)
    v = judge(estimate(spec, w).total_bytes, available, "card")
    json.dumps(v.to_json(), allow_nan=False)


@examples(20)
@given(st.lists(extreme_specs(), min_size=1, max_size=3), st.integers(0, 2**45))
def test_fit_matrix_never_crashes(specs, available):
    m = fit_matrix(specs, available, "card")
    for _, row in m.rows:
        for e in row:
            sane(e)


def test_the_largest_accepted_model_is_finite():
    cfg = {"model_type": "mixtral", "hidden_size": MAX_HIDDEN, "num_hidden_layers": MAX_LAYERS,
           "num_attention_heads": 1, "vocab_size": MAX_VOCAB, "intermediate_size": MAX_HIDDEN * 16,
           "num_local_experts": MAX_EXPERTS, "num_experts_per_tok": MAX_EXPERTS,
           "max_position_embeddings": MAX_POSITION}
    spec = spec_from_config(cfg, source="max.json")
    w = Workload(task="full", dtype="fp32", batch=1 << 20, seq=1 << 24, grad_accum=1 << 20)
    e = estimate(spec, w)
    sane(e)
    assert math.isfinite(float(e.total_bytes)) and e.total_bytes > 10**30


# -- bugs this fuzzing found, now fixed: each of these crashed or answered wrong before.

SMALL = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "vocab_size": 128, "intermediate_size": 256}


@pytest.mark.parametrize("dtype,amp", [("nf4", "none"), ("int8", "none"), ("gptq", "none"), ("bf16", "bf16")])
def test_galore_over_quantized_weights_or_autocast_is_refused_up_front(dtype, amp):
    # It used to be accepted, then crash the estimator with a KeyError.
    with pytest.raises(UsageError, match="GaLore|--amp"):
        Workload(task="galore", dtype=dtype, amp=amp)


@pytest.mark.parametrize("task", ["infer", "lora"])
def test_max_seq_is_zero_when_not_even_128_tokens_fit(task):
    assert max_seq(spec_from_config(SMALL, source="s.json"), Workload(task=task), 0) == 0


def test_plans_from_an_autocast_full_fine_tune():
    # `cardfit plan MODEL --task full --dtype fp32 --amp bf16` exited 2 with "--amp needs fp32".
    plans = best_plans(spec_from_config(SMALL, source="s.json"), 80 * 2**30,
                       Workload(task="full", dtype="fp32", amp="bf16"), "card")
    assert plans and all(p.workload.amp == "none" or p.workload.task == "full" for p in plans)


@pytest.mark.parametrize("task", ["infer", "lora"])
def test_max_seq_of_a_context_longer_than_a_workload_accepts(task):
    spec = spec_from_config(dict(SMALL, max_position_embeddings=2**26), source="s.json")
    # The search stops at the 2**24 tokens a workload accepts (less the 256 new tokens of
    # inference) instead of probing a prompt the workload would refuse.
    want = (1 << 24) if task == "lora" else (1 << 24) - 256
    assert max_seq(spec, Workload(task=task), 2**62) == want

