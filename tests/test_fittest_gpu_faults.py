"""The fit-test faults as they ran for real on an H200 (tests/gpu/faults.py through
tests/gpu/h200_session.sh; issue 11): a child killed mid-step, a cancel, a hang past the
time limit (stopped cleanly), a hang that ignores SIGTERM (killed after the grace period),
and a real out-of-memory error. Each ended in a clear result, the child was reaped, and
NVML's used memory was back to what it was before the test started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardfit.core.fittest.result import FitTestResult

DATA = Path(__file__).parent / "data"
RECORDS = {r["case"]: r for r in map(json.loads, (DATA / "faults_h200.jsonl").read_text().splitlines())}

EXPECTED = {  # case: (status, phase where it stopped, words the message must hold)
    "killed": ("crashed", "step", "SIGKILL"),
    "cancelled": ("cancelled", "step", "cancelled"),
    "hang": ("timeout", "warmup", "time limit"),
    "hang-hard": ("timeout", "warmup", "killed after a 5 s grace period"),
    "oom": ("oom", "warmup", "out of memory"),
}


def test_every_fault_ran():
    assert set(RECORDS) == set(EXPECTED)
    assert not [r for r in RECORDS.values() if "harness_error" in r]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_each_fault_ends_in_a_clear_result_with_the_memory_back(case):
    r = RECORDS[case]
    status, phase, words = EXPECTED[case]
    res = FitTestResult.from_json(r["result"])  # the saved result is a valid cardfit.fittest/1
    assert (res.status, res.phase) == (status, phase)
    assert words in res.message
    assert r["child_state_after"] == "gone"  # reaped: no zombie
    assert r["memory_back"] and r["nvml_used_after"] == r["nvml_used_before"]
    assert any(e["type"] == "sample" for e in r["events"])


def test_the_real_oom_is_judged_against_the_card():
    res = FitTestResult.from_json(RECORDS["oom"]["result"])
    assert not res.fits and res.device_total_bytes > 140 * 2**30
    assert res.predicted_bytes > res.device_total_bytes  # the estimator said so before the run


def test_a_hang_that_ignores_sigterm_takes_the_grace_period_longer():
    soft, hard = RECORDS["hang"], RECORDS["hang-hard"]
    assert soft["time_limit_s"] == hard["time_limit_s"] == 25
    assert hard["wall_s"] - soft["wall_s"] >= 2.5
