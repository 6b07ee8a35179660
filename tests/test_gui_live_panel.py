"""The fit test's live panel (gui/live_panel.py): recorded H100 streams replayed into it
(what the plot, the readouts and the verdict show), the raw / launcher / saved-result
stream shapes, the ring buffer, the redraw on a timer, and every verdict."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cardfit.core.errors import FitTestError
from cardfit.core.fittest.result import FitTestResult
from cardfit.core.units import GiB, MiB, fmt_bytes
from gui_support import gui_settings  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CHILD = ROOT / "core" / "fittest" / "child.py"
H100_STREAMS = sorted(DATA.glob("stream_h100_*.jsonl"))
CASES = ROOT / "tests" / "gpu" / "cases.json"
TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
        "tie_word_embeddings": False, "torch_dtype": "float32"}


def case_of(stream: Path) -> str:
    return stream.name[len("stream_h100_"):-len(".jsonl")]


def prediction_for(case_id: str) -> int:
    """The estimator's total for a recorded case (its config and workload in cases.json)."""
    from cardfit.core.estimate.estimator import estimate
    from cardfit.core.estimate.workload import Workload
    from cardfit.core.specs.hf_config import spec_from_config

    case = next(c for c in json.loads(CASES.read_text()) if c["id"] == case_id)
    spec = spec_from_config(case["config"], source=case_id, id=case["model"])
    return estimate(spec, Workload.from_json(case["workload"])).total_bytes


def raw_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and "type" in ev:
            out.append(ev)
    return out


@pytest.fixture
def panel(qtbot):
    from cardfit.gui.live_panel import LivePanel

    p = LivePanel()
    qtbot.addWidget(p)
    p.resize(1000, 520)
    p.show()
    return p


@pytest.fixture(scope="module")
def cpu_stream(tmp_path_factory) -> Path:
    """A real fit-test stream recorded now: child.py on the CPU with a tiny llama."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("stream")
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"config": TINY, "device": "cpu", "steps": 2, "warmup": 1, "sample_hz": 50,
                                "builder": "builtin",
                                "workload": {"task": "lora", "dtype": "fp32", "batch": 2, "seq": 32, "lora_r": 4}}))
    out = subprocess.run([sys.executable, str(CHILD), str(spec)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    path = folder / "stream_cpu.jsonl"
    path.write_text(out.stdout)
    return path


# ---- recorded H100 streams ------------------------------------------------------------------

def test_h100_streams_are_there():
    assert {case_of(p).split("-")[0] for p in H100_STREAMS} >= {"infer", "lora", "qlora", "oom"}


@pytest.mark.parametrize("stream", H100_STREAMS, ids=case_of)
def test_h100_stream_replay_drives_the_plot(panel, stream):
    events = raw_lines(stream)
    hello = next(e for e in events if e["type"] == "hello")
    result_ev = next(e for e in events if e["type"] == "result")
    samples = [e for e in events if e["type"] == "sample"]
    pred = prediction_for(case_of(stream))

    panel.replay(stream, speed=0, prediction_bytes=pred)

    # One point per sample, device memory as the process's own (NVML used - baseline), in GiB.
    x, y = panel.curves["used"].getData()
    assert len(x) == len(samples) == panel.sample_count
    own = [(s["device_used"] - hello["baseline_device_used"]) / GiB for s in samples]
    assert np.allclose(y, own)
    assert x[0] == samples[0]["t"] and x[-1] == samples[-1]["t"]
    rx, ry = panel.curves["reserved"].getData()
    assert len(rx) == len(samples) and np.nanmax(ry) * GiB == max(s["reserved"] or 0 for s in samples)
    # The card's available memory and the prediction as lines.
    available = hello["device_total"] - hello["baseline_device_used"]
    assert panel.capacity_line.isVisible() and math.isclose(panel.capacity_line.value(), available / GiB)
    assert panel.prediction_line.isVisible() and math.isclose(panel.prediction_line.value(), pred / GiB)
    assert panel.capacity_label.text() == f"Available: {fmt_bytes(available, 2)}"
    assert panel.predicted_label.text() == f"Predicted: {fmt_bytes(pred, 2)}"
    # The peak readout is the child's measured peak (NVML, the process's own bytes).
    peak = result_ev["peak_device_bytes"]
    assert panel.peak_label.text() == f"Peak: {fmt_bytes(peak, 2)}"
    # Phases as bands, in order.
    names = [b[0] for b in panel.bands()]
    assert names[:3] == ["init", "build", "warmup"] and names[-1] == "cleanup"
    verdict, details = panel.verdict(), panel.detail_label.text()
    if result_ev["status"] == "ok":
        assert "step" in names
        assert verdict == f"Fits with {fmt_bytes(available - peak, 2)} to spare"
        err = (pred - peak) / peak * 100
        assert f"measured peak {fmt_bytes(peak, 2)}" in details
        assert f"predicted {fmt_bytes(pred, 2)} (error {err:+.1f} %)" in details
    else:
        assert result_ev["status"] == "oom"
        assert verdict == f"Out of memory in warm-up at {fmt_bytes(peak, 2)}"
    assert panel.verdict_label.isVisible()


def test_h100_replay_at_speed_uses_the_timer(qtbot, panel):
    stream = next(p for p in H100_STREAMS if case_of(p).startswith("qlora"))
    rp = panel.replay(stream, speed=400)
    assert not rp.finished and panel.verdict() == ""
    with qtbot.waitSignal(rp.done, timeout=20000):
        pass
    assert panel.verdict().startswith("Fits with")
    assert len(panel.curves["used"].getData()[0]) == sum(1 for e in raw_lines(stream) if e["type"] == "sample")


def test_screenshot_of_a_replay_is_not_blank(panel):
    stream = next(p for p in H100_STREAMS if case_of(p).startswith("lora"))
    panel.replay(stream, speed=0, prediction_bytes=prediction_for(case_of(stream)))
    img = panel.grab().toImage()
    assert img.width() >= 900
    colors = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
    assert len(colors) > 20  # curves, bands, text: not an empty frame


# ---- stream shapes ----------------------------------------------------------------------------

def test_cpu_stream_plots_rss(panel, cpu_stream):
    events = raw_lines(cpu_stream)
    samples = [e for e in events if e["type"] == "sample"]
    panel.replay(cpu_stream, speed=0)
    assert panel.cpu_run
    x, y = panel.curves["used"].getData()
    assert len(x) == len(samples)
    assert np.allclose(y, [s["rss"] / MiB for s in samples])  # a small run is drawn in MiB
    assert panel.plot.getAxis("left").labelText == "memory (MiB)"
    assert panel.curves["reserved"].getData()[0] is None or len(panel.curves["reserved"].getData()[0]) == 0
    peak = next(e for e in events if e["type"] == "result")["peak_rss"]
    assert panel.peak_label.text() == f"Peak: {fmt_bytes(peak, 2)}"
    assert panel.verdict() == "Fits (CPU run)"
    assert "peak RSS (CPU run)" in panel.detail_label.text()


def test_raw_and_launcher_shapes_agree(panel):
    """The child's own lines (absolute NVML used) and the launcher's (used already the
    process's own, with device_used_total) draw the same curve."""
    base, total = 500 * MiB, 80 * GiB
    used = [base, base + GiB, base + 3 * GiB, base + 2 * GiB]
    raw = [{"type": "hello", "t": 0.0, "device": "cuda:0", "baseline_device_used": base, "device_total": total,
            "memory_source": "nvml"}, {"type": "phase", "phase": "init", "t": 0.0}]
    raw += [{"type": "sample", "t": 0.1 * i, "phase": "init", "device_used": u, "allocated": i * MiB,
             "reserved": 2 * i * MiB, "rss": GiB} for i, u in enumerate(used)]
    for ev in raw:
        panel.feed(dict(ev))
    panel.refresh()
    y_raw = panel.curves["used"].getData()[1].copy()
    assert np.allclose(y_raw, [0, 1, 3, 2])
    assert panel.capacity_bytes == total - base and panel.peak_bytes == 3 * GiB

    launcher = [dict(raw[0], predicted_bytes=4 * GiB, available_bytes=total - base), raw[1]]
    launcher += [dict(e, device_used=e["device_used"] - base, device_used_total=e["device_used"]) for e in raw[2:]]
    panel.reset(keep_reference=False)
    for ev in launcher:
        panel.feed(ev)
    panel.refresh()
    assert np.allclose(panel.curves["used"].getData()[1], y_raw)
    assert panel.prediction_bytes == 4 * GiB and panel.peak_bytes == 3 * GiB


def test_saved_result_replays(panel):
    r = FitTestResult.load(DATA / "fittest_result_fixture.json")
    panel.replay(DATA / "fittest_result_fixture.json", speed=0)
    assert panel.sample_count == len(r.samples)
    assert panel.verdict() == f"Fits with {fmt_bytes(r.available_bytes - r.peak_device_bytes, 2)} to spare"
    assert f"(error {r.error_pct:+.1f} %)" in panel.detail_label.text()


def test_run_cases_recording_and_garbage(tmp_path, cpu_stream):
    """tests/gpu/run_cases.py wraps each line as {"case", "line"}; a case is picked by id;
    lines that are not events are skipped; a file with none is an error naming it."""
    from cardfit.gui.live_panel import load_stream

    lines = cpu_stream.read_text().splitlines()
    wrapped = tmp_path / "streams.jsonl"
    with wrapped.open("w") as f:
        for case in ("first", "second"):
            for ln in lines[:5] if case == "first" else lines:
                f.write(json.dumps({"case": case, "line": ln}) + "\n")
            f.write("not json\n")
    ev1, r1 = load_stream(wrapped)
    ev2, r2 = load_stream(wrapped, case="second")
    assert len(ev1) == 5 and r1.status == "crashed"  # the first case stops before a result
    assert len(ev2) == len(lines) and r2.status == "fits"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("garbage\n[1, 2]\n")
    with pytest.raises(FitTestError, match="empty.jsonl"):
        load_stream(empty)


# ---- drawing ------------------------------------------------------------------------------------

def test_redraws_on_the_timer_not_per_event(qtbot, panel):
    calls = []
    curve = panel.curves["used"]
    orig = curve.setData
    curve.setData = lambda *a, **k: (calls.append(1), orig(*a, **k))
    panel.feed({"type": "hello", "t": 0, "device": "cuda:0", "baseline_device_used": 0, "device_total": 80 * GiB})
    for i in range(2000):
        panel.feed({"type": "sample", "t": i / 50, "device_used": i * MiB, "allocated": 0, "reserved": 0, "rss": 0})
    assert calls == [] and panel.running  # stored, not drawn
    qtbot.waitUntil(lambda: curve.getData()[0] is not None and len(curve.getData()[0]) == 2000, timeout=5000)
    assert len(calls) <= 3


def test_ring_buffer_keeps_the_newest_and_the_peak(qtbot):
    from cardfit.gui.live_panel import LivePanel, RingBuffer

    rb = RingBuffer(4, 2)
    for i in range(6):
        rb.append((i, 10 * i))
    assert len(rb) == 4 and rb.view()[:, 0].tolist() == [2, 3, 4, 5]
    p = LivePanel(capacity=100)
    qtbot.addWidget(p)
    p.feed({"type": "hello", "t": 0, "device": "cuda:0", "baseline_device_used": 0, "device_total": 80 * GiB})
    for i in range(250):
        p.feed({"type": "sample", "t": i * 0.1, "device_used": (40 if i == 10 else 1) * GiB, "rss": 0})
    p.refresh()
    x, _ = p.curves["used"].getData()
    assert len(x) == 100 and math.isclose(x[0], 15.0) and math.isclose(x[-1], 24.9)
    assert p.peak_bytes == 40 * GiB and p.peak_label.text() == "Peak: 40.00 GiB"  # gone from the buffer, kept


# ---- verdicts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("status,phase,expect", [
    ("oom", "step", "Out of memory in steps at 78.50 GiB"),
    ("timeout", "build", "Timed out in build"),
    ("cancelled", "warmup", "Cancelled in warm-up"),
    ("crashed", "step", "Crashed in steps"),
    ("error", "init", "Failed in CUDA init"),
])
def test_every_ending_has_a_verdict(panel, status, phase, expect):
    r = FitTestResult(status=status, message=f"{status} message", phase=phase,
                      peak_device_bytes=int(78.5 * GiB), predicted_bytes=70 * GiB, available_bytes=79 * GiB,
                      device="cuda:0")
    panel.finish(r)
    assert panel.verdict() == expect
    if status not in ("fits", "oom"):
        assert panel.detail_label.text().startswith(f"{status} message")
    assert not panel.running


def test_h200_cli_stream_replays(panel):
    """tests/data/stream_h200_full-llama-3.2-1b-bf16-adamw-b8-s1024.jsonl: what
    `cardfit test ... --stream` printed on an H200 (the launcher's events, as the GUI gets
    them, then the summary line): a 1B full fine-tune, bf16 AdamW, batch 8 x 1024."""
    stream = DATA / "stream_h200_full-llama-3.2-1b-bf16-adamw-b8-s1024.jsonl"
    events = raw_lines(stream)
    hello = next(e for e in events if e["type"] == "hello")
    samples = [e for e in events if e["type"] == "sample"]
    result = FitTestResult.load(DATA / "fittest_h200_full-llama-3.2-1b-bf16-adamw-b8-s1024.json")
    panel.replay(stream, speed=0)
    x, y = panel.curves["used"].getData()
    assert len(x) == len(samples) >= 100
    assert np.allclose(y, [s["device_used"] / GiB for s in samples])  # already the process's own
    assert math.isclose(panel.prediction_line.value(), hello["predicted_bytes"] / GiB)
    assert math.isclose(panel.capacity_line.value(), hello["available_bytes"] / GiB)
    assert panel.peak_label.text() == f"Peak: {fmt_bytes(result.peak_device_bytes, 2)}"
    assert panel.verdict().startswith("Fits with")
    assert [b[0] for b in panel.bands()][:3] == ["init", "build", "warmup"]
