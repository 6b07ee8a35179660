"""MemorySampler on a fake NVML: rate validation, ring buffer, callback, GPU lost mid-run.

No assertion depends on timing: waits have generous limits and only guard against hangs.
"""

from __future__ import annotations

import math
import threading
import time

import pytest

from cardfit.core.errors import HardwareError, UsageError
from cardfit.core.hardware.nvml import NvmlUnavailable
from cardfit.core.hardware.sampler import MemorySampler, next_tick
from fakes import FakeGpu, rtx4090, use_fake_nvml  # noqa: F401
from fakes.fake_nvml import GiB, NO_PERMISSION

HANG_GUARD_S = 20.0


def wait_for(predicate, limit=HANG_GUARD_S):
    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached (hang guard)")
        time.sleep(0.005)


@pytest.fixture
def thread_errors(monkeypatch):
    """Exceptions that escaped any thread during the test."""
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


@pytest.mark.parametrize("hz", [0, 0.5, 50.5, 100, -1, "fast", float("nan"), None])
def test_rate_out_of_range_is_a_usage_error(hz):
    with pytest.raises(UsageError):
        MemorySampler(0, hz=hz)


@pytest.mark.parametrize("hz", [1, 10, 50, "25"])
def test_rates_in_range(hz):
    s = MemorySampler(0, hz=hz)
    assert s.period == pytest.approx(1 / float(hz))


def test_bad_gpu_index_and_window():
    with pytest.raises(UsageError):
        MemorySampler(-1)
    with pytest.raises(UsageError):
        MemorySampler(0, window_s=0)


def test_samples_flow_into_a_bounded_ring(use_fake_nvml, thread_errors):
    used = [i * GiB for i in range(1, 40)]
    use_fake_nvml(rtx4090(used_sequence=used))
    s = MemorySampler(0, hz=50, window_s=0.1)  # room for 5 samples
    assert s.capacity == 5
    with s:
        wait_for(lambda: s.count >= 8)
    assert not s.running
    samples = s.samples()
    assert len(samples) == 5  # the oldest were dropped
    assert [b.t > a.t for a, b in zip(samples, samples[1:])] == [True] * 4
    assert [x.used_bytes for x in samples] == used[s.count - 5:s.count]
    assert s.latest() == samples[-1]
    assert s.peak_used_bytes() == used[s.count - 1]  # the peak survives the ring
    assert all(x.total_bytes == x.used_bytes + x.free_bytes for x in samples)
    assert s.error is None and thread_errors == []


def test_callback_runs_and_a_failing_callback_does_not_stop_sampling(use_fake_nvml, thread_errors):
    use_fake_nvml(rtx4090())
    got = []

    def callback(sample):
        got.append(sample)
        if len(got) == 1:
            raise ValueError("GUI went away")

    s = MemorySampler(0, hz=50, callback=callback).start()
    wait_for(lambda: len(got) >= 3)
    s.stop()
    assert s.callback_error == "ValueError: GUI went away"
    assert s.error is None and thread_errors == []


def test_gpu_lost_mid_run_stops_cleanly(use_fake_nvml, thread_errors):
    fake = use_fake_nvml(rtx4090(lose_after_memory_reads=3))
    s = MemorySampler(0, hz=50).start()
    assert s.wait(timeout=HANG_GUARD_S)  # it stops by itself
    assert not s.running
    assert s.error_status == "gpu_lost" and "lost" in s.error
    assert len(s.samples()) == 3 and s.count == 3
    assert fake.gpus[0].lost
    assert thread_errors == []
    s.stop()  # harmless after the fact


def test_stop_wakes_a_slow_sampler(use_fake_nvml):
    use_fake_nvml(rtx4090())
    s = MemorySampler(0, hz=1).start()
    wait_for(lambda: s.count >= 1)
    s.stop(timeout=HANG_GUARD_S)
    assert not s.running


def test_start_without_nvml_raises_the_reason(use_fake_nvml):
    use_fake_nvml(FakeGpu(), init_error=NO_PERMISSION)
    with pytest.raises(NvmlUnavailable) as err:
        MemorySampler(0).start()
    assert "/dev/nvidia" in str(err.value)


def test_start_on_a_missing_gpu_raises(use_fake_nvml):
    use_fake_nvml(rtx4090())
    with pytest.raises(HardwareError, match="GPU 3 not found"):
        MemorySampler(3).start()


def test_start_twice_is_a_bug(use_fake_nvml):
    use_fake_nvml(rtx4090())
    s = MemorySampler(0, hz=1).start()
    try:
        with pytest.raises(RuntimeError):
            s.start()
    finally:
        s.stop()


@pytest.mark.parametrize("scheduled, now, period, expected", [
    (10.0, 10.03, 0.1, 10.1),   # on time: one period after the last scheduled tick
    (10.0, 10.0, 0.1, 10.1),
    (10.0, 10.1, 0.1, 10.1),    # exactly due
    (10.0, 10.25, 0.1, 10.3),   # 1.5 periods late: skip to the next tick on the grid
    (10.0, 13.01, 1.0, 14.0),   # suspended for 3 s: no burst of catch-up reads
])
def test_next_tick_is_drift_free(scheduled, now, period, expected):
    nxt = next_tick(scheduled, now, period)
    assert nxt == pytest.approx(expected)
    assert nxt >= now
    k = (nxt - scheduled) / period
    assert math.isclose(k, round(k), abs_tol=1e-9)  # stays on the grid
