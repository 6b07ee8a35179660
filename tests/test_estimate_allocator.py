"""The caching-allocator model (core/estimate/allocator.py) against the rules of PyTorch's
c10/cuda/CUDACachingAllocator.cpp, and the training-step replay (step_replay.py) against
what the GPU runs measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardfit.core.estimate import estimator
from cardfit.core.estimate.allocator import AllocatorModel
from cardfit.core.estimate.step_replay import fragmentation, replay
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.hf_config import spec_from_config

MiB = 1 << 20
DATA = Path(__file__).parent / "data"


def test_requests_round_up_and_get_segments_as_pytorch_sizes_them():
    a = AllocatorModel()
    a.malloc(5 * MiB)  # under kMinLargeAlloc (10 MiB): a 20 MiB segment
    assert a.reserved == 20 * MiB
    a.malloc(15 * MiB)  # fits the 15 MiB left of that segment
    assert a.reserved == 20 * MiB
    a.malloc(16 * MiB + 1)  # else a segment of the request rounded up to 2 MiB
    assert a.reserved == 20 * MiB + 18 * MiB
    assert a.allocated == 5 * MiB + 15 * MiB + 16 * MiB + 512  # requests rounded to 512 B
    # up to 1 MiB: the small pool's own 2 MiB segments, split down to 512 B
    first = a.malloc(MiB)
    assert first >= 0 and a.reserved == 40 * MiB
    a.malloc(MiB - 512)
    a.malloc(512)
    assert a.reserved == 40 * MiB
    a.malloc(1)
    assert a.reserved == 42 * MiB


def test_best_fit_splits_and_merges_back():
    a = AllocatorModel()
    big, small = a.malloc(100 * MiB), a.malloc(40 * MiB)
    a.free(big)
    a.free(small)
    x = a.malloc(30 * MiB)  # best fit: the 40 MiB hole, not the 100 MiB one
    y = a.malloc(60 * MiB)  # splits the 100 MiB hole: 40 MiB stay cached
    assert a.reserved == 140 * MiB
    z = a.malloc(40 * MiB)  # the split-off rest
    assert a.reserved == 140 * MiB
    a.free(y)
    a.free(z)  # merges with y's block: the 100 MiB hole again
    a.malloc(100 * MiB)
    assert a.reserved == 140 * MiB
    a.free(x)
    a.malloc(41 * MiB)  # 40 MiB (x's 30 + the 10 left of the split) are not enough
    assert a.reserved == 182 * MiB
    assert a.peak_reserved == 182 * MiB


def test_a_remainder_of_one_mib_or_less_is_not_split_off():
    a = AllocatorModel()
    b = a.malloc(21 * MiB + 512 * 1024)  # a 22 MiB segment; the 0.5 MiB left is not split off
    assert a.reserved == 22 * MiB
    assert a.allocated == 22 * MiB  # the whole block counts, as in torch's allocated_bytes
    a.free(b)
    assert a.allocated == 0


def _record(case_id: str) -> dict:
    for f in sorted(DATA.glob("gpu_measure_h*_part*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r["id"] == case_id:
                return r
    raise KeyError(case_id)


def _spec_and_workload(r: dict):
    return spec_from_config(r["config"], source=r["model"], id=r["model"]), Workload(**r["workload"])


# Full fine-tunes whose measured reserve (torch peak reserved - peak allocated) the replay
# must find within 0.5 GiB: the ones where it is large, and where it is nearly nothing.
@pytest.mark.parametrize("case_id", [
    "full-llama-3.2-1b-bf16-adamw-b8-s1024",  # 3.37 GiB measured
    "full-qwen3-0.6b-bf16-adamw-b16-s1024",  # 7.21
    "full-qwen2.5-0.5b-bf16-adamw-b8-s2048",  # 7.61
    "full-qwen3-1.7b-bf16-adamw-b4-s1024",  # 0.65
    # (full-llama-3.2-1b-bf16-paged-adamw8bit-b8-s1024, 0.14 measured, is a known miss by
    # 4 GiB: test_estimate_generate_replay.py pins it)
    "full-gemma-2-2b-bf16-adamw-b2-s2048",  # 2.41
    "full-llama-3.2-1b-bf16-lion-b4-s1024",  # 1.32
    "full-llama-3.1-8b-bf16-adamw8bit-b1-s1024-ckpt",  # 0.80
])
def test_the_replay_finds_the_measured_reserve(case_id):
    r = _record(case_id)
    spec, w = _spec_and_workload(r)
    measured = r["result"]["peak_reserved"] - r["result"]["peak_allocated"]
    replayed = fragmentation(estimator.step_plan(spec, w))
    assert abs(replayed - measured) < 512 * MiB, (replayed / 2**30, measured / 2**30)


def test_the_first_step_reserves_what_it_uses_and_the_second_fragments():
    # The optimizer's states are made at the first step(), in the holes the first
    # backward left; the second forward then needs new segments (the marks of the run
    # show the same: reserved grows in step 2's forward, not before).
    r = _record("full-smollm2-1.7b-bf16-adamw-b4-s2048-ckpt")
    plan = estimator.step_plan(*_spec_and_workload(r))
    one, two = replay(plan, steps=1), replay(plan, steps=2)
    assert one.fragmentation < 2**30  # measured in the first step: 0.55 GiB
    assert two.fragmentation > 4 * 2**30
    assert replay(plan, steps=3).peak_reserved == two.peak_reserved  # steady from step 2 on


def test_the_estimate_carries_the_replayed_reserve():
    r = _record("full-qwen2.5-0.5b-bf16-adamw-b8-s2048")
    spec, w = _spec_and_workload(r)
    e = estimator.estimate(spec, w)
    reserve = next(c for c in e.components if c.key == "allocator_reserve")
    assert reserve.bytes == fragmentation(estimator.step_plan(spec, w))
    assert "replayed" in reserve.formula


def test_a_config_deeper_than_any_model_is_replayed_in_bounded_time():
    cfg = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 100_000, "num_attention_heads": 4,
           "vocab_size": 1000, "intermediate_size": 1024}
    spec = spec_from_config(cfg, source="deep.json")
    plan = estimator.step_plan(spec, Workload(task="full", batch=64, seq=2048))
    assert plan.layers == 100_000
    assert fragmentation(plan) >= 0
