"""The allocator model and the generate() replay against the caching allocator's own
recorded histories (tests/data/traces_h200/, recorded on the H200 by the fit-test child's
"trace" option, tests/gpu/cases_round3.py): every alloc and free of 8 real runs, from model
build to the end of the first step, tune-split configurations only."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cardfit.core.estimate.allocator import AllocatorModel
from cardfit.core.estimate.estimator import estimate, generate_plan
from cardfit.core.estimate.generate_replay import generate_reserve, replay
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.hf_config import spec_from_config

TRACES = Path(__file__).parent / "data" / "traces_h200"
RECORDS = {r["id"][len("trace-"):]: r for r in map(json.loads, (TRACES / "records.jsonl").read_text().splitlines())}
MiB = 1 << 20


def _events(case_id: str) -> list:
    with gzip.open(TRACES / f"trace-{case_id}.json.gz", "rt") as fh:
        return json.load(fh)["events"]


@pytest.mark.parametrize("case_id", sorted(RECORDS))
def test_the_allocator_model_reproduces_a_recorded_history(case_id):
    # Replaying the real requests in their real order through the model must give the
    # real peak reserved: the rules (rounding, pools, best fit by size then address, split,
    # merge) are the allocator's.
    model, handles = AllocatorModel(), {}
    reserved = peak_reserved = 0
    for action, addr, size, _dt in _events(case_id):
        if action == "S":
            reserved += size
            peak_reserved = max(peak_reserved, reserved)
        elif action == "F":
            reserved -= size
        elif action == "a":
            handles[addr] = model.malloc(size)
        elif action == "f" and addr in handles:
            model.free(handles.pop(addr))
    assert abs(model.peak_reserved - peak_reserved) <= 4 * MiB, case_id
    # and the history is the run that was measured: it starts after the CUDA context's
    # first tensor (one 2 MiB small-pool segment); a training run's second step, after the
    # history ends, can reserve more.
    measured = RECORDS[case_id]["result"]["peak_reserved"]
    if case_id.startswith("infer-"):
        # (the measured, second generate() can reserve a little more: a 2 MiB small-pool
        # segment for infer-gpt2-fp16-b64-p512-n256, 98 MiB for Qwen3-1.7B NF4 batch 8,
        # whose decode dequantizes some weights and not others)
        assert 2 * MiB <= measured - peak_reserved <= 0.04 * measured
    else:
        assert peak_reserved <= measured


def _spec_and_workload(case_id):
    r = RECORDS[case_id]
    return spec_from_config(r["config"], source=r["model"], id=r["model"]), Workload(**r["workload"])


@pytest.mark.parametrize("case_id", [c for c in sorted(RECORDS) if c.startswith("infer-")])
def test_the_generate_replay_matches_the_measured_peaks(case_id):
    spec, w = _spec_and_workload(case_id)
    plan = generate_plan(spec, w)
    if plan is None:
        pytest.skip(f"{spec.model_type} / {w.dtype} / {w.attn} keeps the fitted reserve")
    g = generate_reserve(plan)
    res = RECORDS[case_id]["result"]
    if w.dtype == "int8":
        # LLM.int8's outlier columns are those the random weights' statistics give
        # (int8_outliers.py): the working set to 2 %. At batch 1 the counts' running maximum
        # sets how many new segments the fp32 pairs take, and the model's expected maximum
        # misses some: trace-infer-mistral-7b-v0.3-int8-b1-p1024-n32 has four pairs of
        # new segments, the replay three (4 % short); Qwen3 8B's replay has one more (3 %
        # over). Every layer at all columns was 16 % short on the 8B model at 512 tokens.
        assert 0.995 * res["peak_allocated"] <= g.peak_allocated <= 1.02 * res["peak_allocated"], case_id
        low = 0.99 if w.batch > 1 else 0.95
        assert low * res["peak_reserved"] <= g.peak_reserved <= 1.04 * res["peak_reserved"], case_id
        return
    # The working set to 0.5 %, the reserve to 1 %: one generate() is replayed, and the
    # measured second one can reserve up to 3.4 % more with 4-bit weights
    # (trace-infer-qwen3-1.7b-nf4-b8-p1024-n64, above).
    assert abs(g.peak_allocated - res["peak_allocated"]) <= 0.005 * res["peak_allocated"], case_id
    assert g.peak_reserved >= (0.96 if w.dtype in ("nf4", "fp4") else 0.99) * res["peak_reserved"], case_id
    assert g.peak_reserved <= 1.01 * res["peak_reserved"], case_id


def test_the_estimate_is_the_context_plus_the_replayed_reserve():
    spec, w = _spec_and_workload("infer-qwen2.5-0.5b-bf16-b64-p1024-n128")
    e = estimate(spec, w)
    g = generate_reserve(generate_plan(spec, w))
    context = next(c.bytes for c in e.components if c.key == "cuda_context")
    assert e.total_bytes == context + g.peak_reserved
    assert all(c.bytes >= 0 for c in e.components)


def test_the_kv_cache_growth_is_what_a_long_generation_adds():
    # The decode loop reallocates every layer's k and v one token longer each step: from a
    # short prompt, a long generation's cache outgrows the prefill's working set.
    spec, w = _spec_and_workload("infer-qwen2.5-0.5b-bf16-b64-p1024-n128")
    short = replay(generate_plan(spec, Workload(**{**w.__dict__, "prompt": 64, "new": 8})))
    long = replay(generate_plan(spec, Workload(**{**w.__dict__, "prompt": 64, "new": 256})))
    assert long.peak_allocated > short.peak_allocated
    assert long.peak_reserved > short.peak_reserved


def test_long_generations_are_extended_not_replayed_step_by_step():
    # Past the replay's budget the cache's growth is added, never less than the tensors need.
    spec, w = _spec_and_workload("infer-llama-3.1-8b-bf16-b8-p2048-n128")
    g = generate_reserve(generate_plan(spec, Workload(**{**w.__dict__, "new": 4096})))
    cache = 2 * spec.num_layers * 8 * spec.kv_dim * 2 * (2048 + 4096)
    weights = estimate(spec, w).component("weights")
    assert g.peak_allocated >= cache + weights
    assert g.peak_reserved >= g.peak_allocated


@pytest.mark.parametrize("change", [dict(attn="eager"), dict(dtype="gptq"), dict(task="lora")])
def test_architectures_and_paths_the_replay_does_not_hold_are_left_to_the_fit(change):
    spec, w = _spec_and_workload("infer-llama-3.1-8b-bf16-b8-p2048-n128")
    assert generate_plan(spec, Workload(**{**w.__dict__, **change})) is None


def test_the_greedy_loop_masks_eos_only_where_the_config_has_one():
    # min_new_tokens adds two logits processors (a clone and a masked copy of the fp32
    # scores each step) when there is an end-of-sequence token: Llama's and GPT-2's config
    # classes have one by default, Qwen2's and Qwen3's none (the traces show 5 and 1
    # vocab-sized fp32 blocks per step).
    for case_id, has in [("infer-llama-3.1-8b-bf16-b8-p2048-n128", True), ("infer-gpt2-fp16-b64-p512-n256", True),
                         ("infer-qwen2.5-0.5b-bf16-b64-p1024-n128", False)]:
        spec, w = _spec_and_workload(case_id)
        assert generate_plan(spec, w).processors is has, case_id
    r = RECORDS["infer-qwen2.5-0.5b-bf16-b64-p1024-n128"]
    cfg = {**r["config"], "eos_token_id": 151643}
    spec = spec_from_config(cfg, source=r["model"], id=r["model"])
    assert generate_plan(spec, Workload(**r["workload"])).processors


def test_gpt2_past_its_positions_is_a_warning_not_a_replay():
    spec, w = _spec_and_workload("infer-gpt2-fp16-b64-p512-n256")
    inside = Workload(**{**w.__dict__, "prompt": 896, "new": 128})
    past = Workload(**{**w.__dict__, "prompt": 1024, "new": 128})
    assert generate_plan(spec, inside) is not None and not estimate(spec, inside).warnings
    assert generate_plan(spec, past) is None
    (warning,) = estimate(spec, past).warnings
    assert "1,152" in warning and "1,024 learned positions" in warning


@pytest.mark.parametrize("case_id", [c for c in sorted(RECORDS) if c.startswith("full-")])
def test_the_training_replay_matches_the_traced_full_fine_tunes(case_id):
    # The training histories (two steps each; Gemma 2 at 1,024 to 6,144 tokens, Llama 3.2
    # 1B): Gemma's fp32 norm outputs and soft-capped logits' chain, a tied model's output
    # layer built and dropped and its gradient summed out of place (three embedding-sized
    # blocks), the k and v the returned cache holds to the end, and the two threads' cuBLAS
    # workspaces are what the step replay makes. Without the tied model's two,
    # trace-full-gemma-2-2b-bf16-adamw-b1-s3072-ckpt was 3.9 % short.
    from cardfit.core.estimate.estimator import step_plan
    from cardfit.core.estimate.step_replay import replay as step_replay

    spec, w = _spec_and_workload(case_id)
    a = step_replay(step_plan(spec, w))
    res = RECORDS[case_id]["result"]
    assert abs(a.peak_allocated - res["peak_allocated"]) <= 0.005 * res["peak_allocated"], case_id
    if case_id == "full-llama-3.2-1b-bf16-paged-adamw8bit-b8-s1024":
        # Known miss, on the safe side: the replay makes no forward temporaries, so its second
        # pass finds the holes in other places than the real one and cuts a new 4 GiB
        # segment for the log-softmax (the real run reuses its first pass's).
        assert res["peak_reserved"] <= a.peak_reserved <= 1.14 * res["peak_reserved"], case_id
        return
    assert abs(a.peak_reserved - res["peak_reserved"]) <= 0.01 * res["peak_reserved"], case_id
