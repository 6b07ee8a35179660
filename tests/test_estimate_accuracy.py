"""The estimator against real GPU measurements (issue 6): every measured configuration in
tests/data/gpu_measure_h*_part*.jsonl (round 1 on an H100, rounds 2 to 6 on an H200,
each measured after the formulas of its time were set), each one a fresh process with the real
transformers + PEFT + bitsandbytes stack. Targets, against the NVML device-used peak:
median |error| <= 3 %, 90th percentile <= 8 %, no under-estimate worse than -5 %, on the
cases used for tuning and, separately, on the held-out ones."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.hf_config import spec_from_config

DATA = Path(__file__).parent / "data"


def lines() -> list[dict]:
    return [json.loads(line) for f in sorted(DATA.glob("gpu_measure_h*_part*.jsonl"))
            for line in f.read_text().splitlines()]


def measured() -> list[dict]:
    # "repeat-" cases run a round-1 case again on the other card (test below), not new cases.
    return [r for r in lines() if (r.get("result") or {}).get("status") == "ok" and not r["id"].startswith("repeat-")]


def errors(records: list[dict]) -> list[tuple[str, float]]:
    out = []
    for r in records:
        spec = spec_from_config(r["config"], source=r["model"], id=r["model"])
        pred = estimate(spec, Workload(**r["workload"])).total_bytes
        meas = r["result"]["peak_device_bytes"]
        out.append((r["id"], (pred - meas) / meas * 100))
    return out


def p90(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]


RECORDS = measured()


def test_enough_cases_were_measured():
    assert len(RECORDS) >= 100
    assert sum("h200" in str(r.get("versions", {}).get("gpu", "")).lower() for r in RECORDS) >= 15
    assert len({r["workload"]["task"] for r in RECORDS}) == 5
    assert sum(r["split"] == "holdout" for r in RECORDS) >= 12


@pytest.mark.parametrize("split", ["tune", "holdout"])
def test_accuracy_targets(split):
    errs = errors([r for r in RECORDS if r["split"] == split])
    abs_errs = [abs(e) for _, e in errs]
    report = "\n".join(f"{i}: {e:+.1f}%" for i, e in sorted(errs, key=lambda x: x[1]))
    assert statistics.median(abs_errs) <= 3.0, report
    assert p90(abs_errs) <= 8.0, report


def test_no_under_estimate_is_worse_than_five_percent():
    # An under-estimate tells a user a job fits that then dies hours in: the floor holds on
    # every measured case, tuning and held out alike.
    under = sorted((round(e, 2), i) for i, e in errors(RECORDS) if e < -5.0)
    assert not under, under


def test_cases_that_ran_out_of_memory_are_predicted_not_to_fit():
    # Two configurations died with torch.OutOfMemoryError on the 80 GB card; the engine
    # must say they do not fit (a "fits" here would send a user into that OOM).
    ooms = []
    for r in lines():
        if (r.get("result") or {}).get("status") == "oom":
            ooms.append(r)
    assert len(ooms) >= 2
    for r in ooms:
        spec = spec_from_config(r["config"], source=r["model"], id=r["model"])
        pred = estimate(spec, Workload(**r["workload"])).total_bytes
        assert pred > r["result"]["device_total"], r["id"]


def test_the_recorded_peak_is_nvml_not_torch():
    # The device figure must include what torch's counters miss (CUDA context...).
    for r in RECORDS:
        res = r["result"]
        assert res["peak_device_bytes"] > res["peak_reserved"], r["id"]


def test_a_fresh_process_repeats_its_peak_to_the_byte_on_another_card():
    # Round 2 ran two round-1 cases again on the H200: the caching allocator is
    # deterministic, so the same program reserves the same bytes, whatever the card. This is
    # what lets the estimator replay it (core/estimate/step_replay.py).
    first = {r["id"]: r["result"] for r in lines() if "result" in r}
    repeats = [r for r in lines() if r["id"].startswith("repeat-")]
    assert len(repeats) >= 2
    for r in repeats:
        a, b = first[r["id"][len("repeat-"):]], r["result"]
        assert a["versions"]["gpu"] != b["versions"]["gpu"]
        for key in ("peak_reserved", "peak_allocated", "peak_device_bytes"):
            assert a[key] == b[key], (r["id"], key)
