"""search_max (core/fittest/launcher.py): bisection over batch / sequence length with a
fake runner whose memory limit is known, so every probe is checked without a child."""

from __future__ import annotations

import threading

import pytest

from cardfit.core.errors import UsageError
from cardfit.core.estimate.workload import Workload
from cardfit.core.fittest.launcher import FitTestRequest, search_max
from cardfit.core.fittest.result import FitTestResult
from cardfit.core.specs.hf_config import spec_from_config

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "max_position_embeddings": 8192}


@pytest.fixture(scope="module")
def spec():
    return spec_from_config(TINY, source="test", id="tiny")


class FakeRunner:
    """Fits while the searched field is <= limit; records every probe."""

    def __init__(self, limit: int, field: str = "batch", fail_at: int | None = None, status: str = "crashed"):
        self.limit, self.field, self.fail_at, self.status = limit, field, fail_at, status
        self.tried: list[int] = []

    def __call__(self, req: FitTestRequest, spec) -> FitTestResult:
        v = getattr(req.workload, self.field)
        self.tried.append(v)
        if v == self.fail_at:
            return FitTestResult(status=self.status, message="boom")
        ok = v <= self.limit
        return FitTestResult(status="fits" if ok else "oom", message="", peak_device_bytes=v * 1000,
                             predicted_bytes=v * 1100)


def req(w=Workload(task="lora", batch=1, seq=256)):
    return FitTestRequest(model="tiny", workload=w, device="cpu", steps=1)


@pytest.mark.parametrize("limit, hint", [(37, 30), (37, 37), (37, 50), (37, 4000), (1, 8), (4096, 100)])
def test_finds_the_largest_batch(spec, limit, hint):
    fake = FakeRunner(limit)
    seen = []
    sr = search_max(req(), "batch", 1, 4096, seen.append, spec=spec, hint=hint, runner=fake)
    assert sr.status == "done" and sr.best == limit
    assert sr.field == "batch" and sr.hint == hint
    assert [p.value for p in sr.probes] == fake.tried == [p.value for p in seen]
    assert len(set(fake.tried)) == len(fake.tried)  # each value probed once, in a fresh run
    assert sr.best_result is not None and sr.best_result.peak_device_bytes == limit * 1000
    # every probe above the answer failed, every one at or below it fitted
    assert all((v <= limit) == p.fits for v, p in zip(fake.tried, sr.probes))
    assert limit + 1 in fake.tried or limit == 4096


def test_a_good_hint_saves_probes(spec):
    near, far = FakeRunner(200), FakeRunner(200)
    search_max(req(), "batch", 1, 4096, spec=spec, hint=190, runner=near)
    search_max(req(), "batch", 1, 4096, spec=spec, hint=1, runner=far)
    assert len(near.tried) < len(far.tried)
    assert near.tried[0] == 190


def test_none_fits(spec):
    sr = search_max(req(), "batch", 2, 64, spec=spec, hint=16, runner=FakeRunner(1))
    assert sr.status == "none-fits" and sr.best is None and sr.best_result is None
    assert "not even batch 2" in sr.message


def test_stops_on_a_probe_that_neither_fits_nor_ooms(spec):
    fake = FakeRunner(37, fail_at=40)
    sr = search_max(req(), "batch", 1, 4096, spec=spec, hint=32, runner=fake)
    assert sr.status == "error" and "crashed" in sr.message and "batch 40" in sr.message
    assert fake.tried[-1] == 40
    assert sr.best == 32  # what was proven before it stopped


def test_cancelled_probe_or_stop_event(spec):
    sr = search_max(req(), "batch", 1, 64, spec=spec, hint=8, runner=FakeRunner(37, fail_at=8, status="cancelled"))
    assert sr.status == "cancelled"
    stop = threading.Event()
    fake = FakeRunner(37)
    sr = search_max(req(), "batch", 1, 64, lambda p: stop.set(), spec=spec, hint=8, runner=fake,
                    stop=stop)
    assert sr.status == "cancelled" and fake.tried == [8]


def test_seq_axis_searches_prompt_for_inference(spec):
    fake = FakeRunner(3000, field="prompt")
    w = Workload(task="infer", batch=1, prompt=512, new=64)
    sr = search_max(req(w), "seq", spec=spec, hint=1024, runner=fake)
    assert sr.field == "prompt" and sr.status == "done"
    assert sr.hi == 8192 - 64
    assert 3000 - 128 <= sr.best <= 3000  # to within the default 128-token resolution
    fake = FakeRunner(3000, field="seq")
    sr = search_max(req(), "seq", 128, 8192, spec=spec, hint=1024, runner=fake, resolution=1)
    assert sr.field == "seq" and sr.best == 3000


def test_hint_from_the_estimator(spec):
    # With no hint given, the CPU run starts from the estimator's answer for host RAM.
    fake = FakeRunner(4)
    sr = search_max(req(), "batch", 1, 16, spec=spec, runner=fake)
    assert sr.best == 4
    assert sr.hint is None or fake.tried[0] == min(16, sr.hint)


def test_bad_ranges(spec):
    with pytest.raises(UsageError):
        search_max(req(), "batch", 8, 2, spec=spec, hint=4, runner=FakeRunner(3))
    with pytest.raises(UsageError, match="batch or seq"):
        search_max(req(), "width", spec=spec, runner=FakeRunner(3))


def test_to_json(spec):
    import json

    sr = search_max(req(), "batch", 1, 64, spec=spec, hint=8, runner=FakeRunner(10))
    d = json.loads(json.dumps(sr.to_json()))
    assert d["best"] == 10 and d["axis"] == "batch" and d["probes"][0]["value"] == 8
    assert d["probes"][0]["status"] == "fits"
