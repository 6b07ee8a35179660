"""FitTestResult (core/fittest/result.py): JSON round trip, field checks naming the bad
field, and atomic save."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cardfit.core.errors import FitTestError
from cardfit.core.fittest.result import SCHEMA, STATUSES, FitTestResult

FIXTURE = Path(__file__).parent / "data" / "fittest_result_fixture.json"


def sample_result(**kw) -> FitTestResult:
    base = dict(status="oom", message="does not fit: out of memory in step", phase="step",
                peak_device_bytes=20 * 2**30, predicted_bytes=21 * 2**30, error_pct=None,
                device_total_bytes=24 * 2**30, available_bytes=23 * 2**30, peak_rss_bytes=2**31,
                step_seconds=None, tokens_per_second=None,
                samples=[{"t": 0.0, "phase": "init", "device_used": 0, "allocated": None, "reserved": None,
                          "rss": 10}],
                phases=[{"phase": "init", "t": 0.0}, {"phase": "step", "t": 1.5}],
                marks=[{"label": "context", "phase": "init", "device_used": 500}],
                versions={"torch": "2.5.1"}, model={"id": "x", "name": "X", "params": 10},
                workload={"task": "lora", "batch": 4}, gpu={"index": 0, "name": "RTX 4090"},
                started="2025-01-01T00:00:00Z", device="cuda:0", builder="hf", notes=["n"],
                peak_reserved_bytes=19 * 2**30, peak_allocated_bytes=18 * 2**30, wall_seconds=3.5,
                exit_code=3, garbage_lines=2, python="/usr/bin/python3")
    base.update(kw)
    return FitTestResult(**base)


def test_round_trip():
    r = sample_result()
    d = r.to_json()
    assert d["schema"] == SCHEMA
    assert FitTestResult.from_json(json.loads(json.dumps(d))) == r
    assert r.verdict == "does not fit" and not r.fits
    assert r.headroom_bytes == 3 * 2**30


def test_fixture_of_the_contract_loads():
    r = FitTestResult.load(FIXTURE)
    assert r.status == "fits" and r.fits and r.peak_device_bytes > 0 and r.samples
    assert r.builder is None and r.garbage_lines == 0  # fields beyond the contract are optional


@pytest.mark.parametrize("field, value", [
    ("status", "maybe"), ("peak_device_bytes", "12"), ("peak_device_bytes", True), ("error_pct", "x"),
    ("samples", {}), ("samples", [1]), ("phases", "init"), ("versions", []), ("message", None),
    ("step_seconds", float("nan")),
])
def test_bad_fields_are_named(field, value):
    d = sample_result().to_json()
    d[field] = value
    with pytest.raises(FitTestError, match=f"'{field}'"):
        FitTestResult.from_json(d)


def test_bad_sample_value_is_named():
    d = sample_result().to_json()
    d["samples"][0]["rss"] = "lots"
    with pytest.raises(FitTestError, match=r"samples\[0\]\.rss"):
        FitTestResult.from_json(d)


def test_schema_and_shape():
    with pytest.raises(FitTestError, match="not a JSON object"):
        FitTestResult.from_json([1])
    with pytest.raises(FitTestError, match="schema"):
        FitTestResult.from_json({"schema": "cardfit.report/1", "status": "fits"})
    with pytest.raises(FitTestError, match="not supported"):
        FitTestResult.from_json({"schema": "cardfit.fittest/9", "status": "fits"})
    with pytest.raises(FitTestError, match="'status' is missing"):
        FitTestResult.from_json({"schema": SCHEMA})
    assert FitTestResult.from_json({"status": "crashed", "unknown_future_field": 1}).status == "crashed"
    assert set(STATUSES) == {"fits", "oom", "error", "timeout", "cancelled", "crashed"}


def test_save_and_load(tmp_path):
    r = sample_result()
    path = tmp_path / "r.json"
    r.save(path)
    assert FitTestResult.load(path) == r
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FitTestError, match="bad.json"):
        FitTestResult.load(bad)
    with pytest.raises(FitTestError, match="cannot read"):
        FitTestResult.load(tmp_path / "missing.json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"status": "fits", "peak_device_bytes": -1.5e300}))
    with pytest.raises(FitTestError, match="wrong.json.*peak_device_bytes"):
        FitTestResult.load(wrong)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    sample_result(message="old").save(path)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(FitTestError, match="cannot write"):
            sample_result(message="new").save(path)
    finally:
        tmp_path.chmod(0o700)
    assert FitTestResult.load(path).message == "old"


def test_save_into_a_missing_folder(tmp_path):
    with pytest.raises(FitTestError, match="does not exist"):
        sample_result().save(tmp_path / "no" / "r.json")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    # A disk that fills up mid-write: the old file stays whole, no temporary file is left.
    path = tmp_path / "r.json"
    sample_result(message="old").save(path)
    import cardfit.core.atomic as atomic

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(FitTestError, match="No space left"):
        sample_result(message="new").save(path)
    monkeypatch.undo()
    assert FitTestResult.load(path).message == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
