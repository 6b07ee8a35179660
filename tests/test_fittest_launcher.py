"""The fit-test parent (core/fittest/launcher.py) with real child processes on the CPU:
a run that fits, and every fault child.py can inject (spec key "fault", test-only) ending
in the right status with the process reaped and its group gone."""

from __future__ import annotations

import os
import sys
import threading

import pytest

pytest.importorskip("torch")

from cardfit.core.errors import FitTestError, UsageError  # noqa: E402
from cardfit.core.estimate.workload import Workload  # noqa: E402
from cardfit.core.fittest import launcher  # noqa: E402
from cardfit.core.fittest.launcher import FitTestRequest, FitTestRun, resolve_python  # noqa: E402
from cardfit.core.fittest.result import FitTestResult  # noqa: E402
from cardfit.core.specs.hf_config import spec_from_config  # noqa: E402

TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
        "tie_word_embeddings": False, "torch_dtype": "float32"}
INFER = Workload(task="infer", dtype="fp32", batch=1, prompt=16, new=2)
LORA = Workload(task="lora", dtype="fp32", batch=2, seq=32, lora_r=4)


@pytest.fixture(scope="module")
def spec():
    return spec_from_config(TINY, source="test", id="tiny-llama")


def request(workload=INFER, **kw) -> FitTestRequest:
    base = dict(model="tiny-llama", workload=workload, device="cpu", steps=1, warmup=0,
                builder="builtin", time_limit_s=120, sample_hz=20)
    base.update(kw)
    return FitTestRequest(**base)


def assert_gone(pid: int) -> None:
    """Reaped (no zombie: not our child any more) and no process left in its group."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    psutil = pytest.importorskip("psutil")
    if psutil.pid_exists(pid):  # only a recycled pid may exist, never our zombie
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert psutil.Process(pid).ppid() != os.getpid()
    if os.name == "posix":
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def run_until_step(run: FitTestRun) -> list[dict]:
    """Consumes events until the child enters its first step (where faults fire)."""
    seen = []
    for ev in run.events():
        seen.append(ev)
        if ev["type"] == "phase" and ev["phase"] in ("warmup", "step"):
            return seen
        assert ev["type"] != "end", ev["result"].message
    raise AssertionError("no step phase")


def test_training_run_fits_end_to_end(spec, tmp_path):
    run = FitTestRun(request(LORA), spec)
    assert run.prediction_bytes > 0
    events = list(run.start().events())
    kinds = [e["type"] for e in events]
    assert kinds[0] == "hello" and kinds[-1] == "end"
    assert {"phase", "sample", "mark", "built", "step", "result"} <= set(kinds)
    hello = events[0]
    assert hello["predicted_bytes"] == run.prediction_bytes
    r = events[-1]["result"]
    assert r is run.wait()
    assert list(run.events()) == [{"type": "end", "result": r}]  # a late reader is not left waiting
    assert r.status == "fits", r.message
    assert r.phase is None and r.exit_code == 0 and r.garbage_lines == 0
    assert r.builder == "builtin"
    assert r.peak_device_bytes is None and r.error_pct is None  # CPU: RSS, not device memory
    assert r.peak_rss_bytes > 10 * 2**20
    assert r.step_seconds > 0 and r.tokens_per_second > 0
    assert [p["phase"] for p in r.phases][:3] == ["init", "build", "step"]
    assert r.samples and set(r.samples[0]) == {"t", "phase", "device_used", "allocated", "reserved", "rss"}
    assert {m["label"] for m in r.marks} >= {"context", "weights", "forward", "backward", "optimizer"}
    assert r.model["id"] == "tiny-llama" and r.model["params"] == spec.param_counts().total
    assert r.workload == LORA.to_json()
    assert r.versions["torch"]
    assert any("LoRA r=4" in n for n in r.notes)
    assert_gone(run.pid)
    # the result survives a JSON round trip through a file
    path = tmp_path / "r.json"
    r.save(path)
    back = FitTestResult.load(path)
    assert back == r


def test_hf_builder_inference_fits(spec):
    pytest.importorskip("transformers")
    run = FitTestRun(request(INFER, builder="hf"), spec)
    r = run.wait()
    assert r.status == "fits", r.message
    assert r.builder == "hf" and r.versions.get("transformers")
    assert "generate" in {m["label"] for m in r.marks}
    assert_gone(run.pid)


def test_oom_is_a_result_with_its_phase(spec):
    run = FitTestRun(request(fault="oom"), spec)
    r = run.wait()
    assert r.status == "oom" and r.verdict == "does not fit"
    assert r.phase == "step"
    assert "out of memory" in r.message and "Tried to allocate" in r.message
    assert r.peak_rss_bytes and r.exit_code == 3
    assert_gone(run.pid)


def test_error_in_the_child(spec):
    run = FitTestRun(request(fault="error"), spec)
    r = run.wait()
    assert r.status == "error" and r.phase == "step"
    assert "RuntimeError: injected error" in r.message
    assert_gone(run.pid)


def test_garbage_lines_are_skipped_and_counted(spec):
    run = FitTestRun(request(fault="garbage"), spec)
    r = run.wait()
    assert r.status == "fits", r.message
    assert r.garbage_lines == 7 == run.garbage_lines
    assert "7 unreadable output lines skipped" in r.message
    assert_gone(run.pid)


@pytest.mark.parametrize("fault, code, why", [("segfault", -11, "SIGSEGV"), ("exit", 7, "exited with code 7")])
def test_crash_without_result(spec, fault, code, why):
    run = FitTestRun(request(fault=fault), spec)
    r = run.wait()
    assert r.status == "crashed"
    assert r.exit_code == code
    assert why in r.message and r.phase == "step"
    assert f"injected fault '{fault}'" in r.message  # the last stderr lines
    assert_gone(run.pid)


def test_time_limit(spec):
    run = FitTestRun(request(fault="hang", time_limit_s=1.5), spec, grace_s=10)
    r = run.wait(timeout=60)
    assert r.status == "timeout"
    assert "time limit of 1.5 s" in r.message
    assert r.exit_code in (5, -15)  # a clean stop, or SIGTERM before the handler was installed
    assert_gone(run.pid)


def test_cancel_stops_cleanly(spec):
    run = FitTestRun(request(fault="hang"), spec, grace_s=30)
    run.start()
    run_until_step(run)
    threading.Thread(target=run.cancel).start()  # from another thread, as the GUI does
    rest = list(run.events())
    r = rest[-1]["result"]
    assert r.status == "cancelled" and r.phase == "step"
    assert "killed" not in r.message
    assert r.exit_code == 5 and any(e["type"] == "stopped" for e in rest)  # SIGTERM -> clean stop
    assert_gone(run.pid)


def test_cancel_kills_after_grace(spec):
    run = FitTestRun(request(fault="hang-hard"), spec, grace_s=0.5)
    run.start()
    run_until_step(run)
    run.cancel()
    r = run.wait(timeout=30)
    assert r.status == "cancelled" and "killed" in r.message
    assert r.exit_code == -9
    assert_gone(run.pid)


def test_cancel_before_start(spec):
    run = FitTestRun(request(), spec)
    run.cancel()
    assert run.wait(timeout=1).status == "cancelled"
    assert run.pid is None


def test_request_checks(spec):
    with pytest.raises(UsageError, match="--device"):
        FitTestRun(request(device="tpu"), spec)
    with pytest.raises(UsageError, match="--steps"):
        FitTestRun(request(steps=0), spec)
    with pytest.raises(UsageError, match="--builder"):
        FitTestRun(request(builder="jax"), spec)
    with pytest.raises(FitTestError, match="one GPU"):
        FitTestRun(request(Workload(task="full", dtype="bf16", gpus=2, zero=3)), spec)
    with pytest.raises(FitTestError, match="gptq"):
        FitTestRun(request(Workload(task="infer", dtype="gptq")), spec)
    assert request(device=None, gpu_index=1).resolved_device == "cuda:1"


def test_child_spec_is_plain_json(spec):
    import json

    s = request(fault="hang").child_spec(spec)
    assert json.loads(json.dumps(s)) == s
    assert s["config"]["hidden_size"] == 64 and s["device"] == "cpu" and s["fault"] == "hang"
    assert "fault" not in request().child_spec(spec)


# ---- the interpreter ------------------------------------------------------------------

def test_resolve_python_default_is_this_interpreter():
    assert os.path.samefile(resolve_python(None), sys.executable)


def test_resolve_python_frozen_needs_one(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    with pytest.raises(FitTestError, match="--python") as exc:
        resolve_python(None)
    assert "Preferences" in str(exc.value)
    assert resolve_python(sys.executable)  # a named one still works


def test_resolve_python_bad_paths(tmp_path):
    with pytest.raises(FitTestError, match="does not exist"):
        resolve_python(str(tmp_path / "nope" / "python"))
    with pytest.raises(FitTestError, match="is a folder"):
        resolve_python(str(tmp_path))
    with pytest.raises(FitTestError, match="no such interpreter on PATH"):
        resolve_python("cardfit-no-such-python-3.99")
    plain = tmp_path / "notexec"
    plain.write_text("x")
    plain.chmod(0o644)
    with pytest.raises(FitTestError, match="not executable"):
        resolve_python(str(plain))


@pytest.mark.skipif(os.name != "posix", reason="shell wrapper")
def test_resolve_python_without_torch(tmp_path):
    # The same interpreter with site-packages switched off (-S): a real Python without torch.
    wrapper = tmp_path / "python-no-torch"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    wrapper.chmod(0o755)
    with pytest.raises(FitTestError, match="cannot import torch"):
        resolve_python(str(wrapper))
    broken = tmp_path / "not-python"
    broken.write_text("#!/bin/sh\necho nope >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(FitTestError, match="does not run as a Python interpreter"):
        resolve_python(str(broken))


def test_start_reports_a_missing_runner(spec, monkeypatch, tmp_path):
    monkeypatch.setattr(launcher, "CHILD", tmp_path / "child.py")
    with pytest.raises(FitTestError, match="missing"):
        FitTestRun(request(), spec).start()


def test_a_run_past_learned_positions_is_refused_before_it_starts():
    # GPT-2's position table has 1,024 rows; on the H200 1,024 + 128 tokens ended in a CUDA
    # device-side assert, so the fit test says why up front instead.
    from cardfit.core.specs.catalog import catalog_row

    gpt2 = spec_from_config(catalog_row("openai-community/gpt2")["config"], source="t", id="gpt2")
    with pytest.raises(FitTestError, match="1,024 learned positions"):
        request(Workload(task="infer", dtype="fp16", prompt=1024, new=128)).child_spec(gpt2)
    with pytest.raises(FitTestError, match="2,048-token sequence"):
        request(Workload(task="full", dtype="bf16", seq=2048)).child_spec(gpt2)
    assert request(Workload(task="infer", dtype="fp16", prompt=896, new=128)).child_spec(gpt2)
