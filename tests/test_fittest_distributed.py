"""The multi-GPU fit test (core/fittest/multi_launcher.py + distributed.py) on the CPU: two
gloo ranks of a tiny built-in Llama, end to end, with FSDP2 full shard, FSDP2 grad-op and
DDP; a rank that dies or runs out of memory stops every rank with a result that names it,
and every process is reaped (no zombie, no process group left)."""

from __future__ import annotations

import json
import os
import re
import signal
import threading

import pytest

pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("this torch has no gloo backend", allow_module_level=True)

from cardfit.cli import main  # noqa: E402
from cardfit.core.errors import FitTestError, UsageError  # noqa: E402
from cardfit.core.estimate.estimator import estimate  # noqa: E402
from cardfit.core.estimate.workload import Workload  # noqa: E402
from cardfit.core.fittest.launcher import FitTestRequest  # noqa: E402
from cardfit.core.fittest.multi_launcher import MultiFitTestRun, check_multi, free_port  # noqa: E402
from cardfit.core.fittest.result import FitTestResult  # noqa: E402
from cardfit.core.specs.hf_config import spec_from_config  # noqa: E402

TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
        "tie_word_embeddings": False, "torch_dtype": "float32"}
FULL = Workload(task="full", dtype="fp32", batch=2, seq=32, gpus=2)


@pytest.fixture(scope="module")
def spec():
    return spec_from_config(TINY, source="test", id="tiny-llama")


def request(workload=FULL, **kw) -> FitTestRequest:
    base = dict(model="tiny-llama", workload=workload, device="cpu", steps=1, warmup=1,
                builder="builtin", time_limit_s=120, sample_hz=20)
    base.update(kw)
    return FitTestRequest(**base)


def assert_all_gone(run: MultiFitTestRun) -> None:
    """Every rank reaped (waitpid has nothing left to collect) and its process group gone."""
    assert len(run.pids) == 2
    for pid in run.pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if os.name == "posix":
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)


def ranks_of(events: list[dict], kind: str) -> list[int]:
    return sorted(e["rank"] for e in events if e["type"] == kind)


# ---- what it refuses, before any process starts ----------------------------------------

@pytest.mark.parametrize("workload, words", [
    (FULL.with_(gpus=1), "--gpus 2 or more"),
    (Workload(task="infer", dtype="fp32", gpus=2), "runs training"),
    (FULL.with_(fsdp="full", offload="optimizer"), "--offload params"),
    (FULL.with_(offload="params"), "needs --fsdp or --zero"),
    (FULL.with_(zero=2, offload="params"), "ZeRO stage 3"),
    (Workload(task="qlora", dtype="nf4", gpus=2, fsdp="full"), "does not shard nf4"),
    (FULL.with_(optim="adamw8bit", fsdp="full"), "adamw8bit"),
    (Workload(task="galore", dtype="bf16", gpus=2), "GaLore"),
    (FULL.with_(fsdp="full", amp="fp16"), "--amp bf16"),
])
def test_check_refuses_what_it_cannot_run(workload, words):
    with pytest.raises((UsageError, FitTestError)) as exc:
        check_multi(request(workload))
    assert words in str(exc.value)


def test_other_fields_are_checked_like_one_gpu(spec):
    with pytest.raises(UsageError, match="--steps"):
        MultiFitTestRun(request(steps=0), spec)


def test_free_port_is_a_port():
    assert 0 < free_port() < 65536


def test_per_gpu_round_trips_and_is_checked():
    r = FitTestResult(status="fits", per_gpu=[{"rank": 0, "peak_device_bytes": 5}, {"rank": 1, "peak_device_bytes": 7}])
    back = FitTestResult.from_json(json.loads(r.dumps()))
    assert back == r and back.per_gpu[1]["peak_device_bytes"] == 7
    assert FitTestResult.from_json({"status": "fits"}).per_gpu == []  # one-GPU results of before
    with pytest.raises(FitTestError, match="per_gpu"):
        FitTestResult.from_json({"status": "fits", "per_gpu": [3]})
    with pytest.raises(FitTestError, match="per_gpu"):
        FitTestResult.from_json({"status": "fits", "per_gpu": {"rank": 0}})


def test_prediction_is_the_estimators_per_gpu_figure(spec):
    w = FULL.with_(fsdp="full")
    run = MultiFitTestRun(request(w), spec)
    assert run.prediction_bytes == estimate(spec, w).total_bytes
    assert run.prediction_bytes < estimate(spec, FULL).total_bytes  # sharded < a DDP replica
    assert run.child_specs[1]["distributed"]["world_size"] == 2
    assert [s["device"] for s in run.child_specs] == ["cpu", "cpu"]


# ---- end to end: two gloo ranks ------------------------------------------------------

@pytest.mark.parametrize("workload, note", [
    (FULL.with_(fsdp="full"), "FULL_SHARD, reshard_after_forward=True"),
    (Workload(task="lora", dtype="fp32", batch=2, seq=32, lora_r=4, gpus=2, fsdp="grad-op"),
     "SHARD_GRAD_OP, reshard_after_forward=False"),
])
def test_fsdp_runs_on_two_gloo_ranks(spec, workload, note):
    run = MultiFitTestRun(request(workload), spec)
    events = list(run.start().events())
    r = events[-1]["result"]
    assert r.status == "fits", r.message
    for kind in ("hello", "built", "result"):
        assert ranks_of(events, kind) == [0, 1], kind
    assert {e["rank"] for e in events if e["type"] == "sample"} == {0, 1}
    built = [e for e in events if e["type"] == "built"]
    assert all(any(note in n for n in b["notes"]) for b in built), built[0]["notes"]
    for b in built:  # each rank joined the group as itself, and holds only its shard
        assert [n for n in b["notes"] if n.startswith("rank ")] == [f"rank {b['rank']} of 2 (gloo)"]
        held = [n for n in b["notes"] if n.startswith("this rank holds")]
        local, total = (int(x) for x in re.findall(r"\d+", held[0]))
        assert total == b["params"] + (b["trainable"] if workload.task == "lora" else 0)  # + the adapters
        assert local * 2 <= total + 2 * 64  # half of every tensor (rounded up per tensor)
    assert [g["rank"] for g in r.per_gpu] == [0, 1]
    assert all(g["status"] == "fits" and g["peak_rss_bytes"] > 10 * 2**20 for g in r.per_gpu)
    assert all(g["predicted_bytes"] == run.prediction_bytes for g in r.per_gpu)
    # host RAM: both ranks at once, so more than either one alone
    assert r.peak_rss_bytes > max(g["peak_rss_bytes"] for g in r.per_gpu)
    assert r.exit_code == 0 and r.step_seconds > 0 and r.tokens_per_second > 0
    assert r.samples and {s["rank"] for s in r.samples} <= {0, 1}
    assert r.gpu["count"] == 2 and r.device == "cpu"
    assert FitTestResult.from_json(json.loads(r.dumps())) == r
    assert_all_gone(run)


def test_ddp_through_the_cli(spec, tmp_path, capsys):
    path = tmp_path / "tiny" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(TINY))
    out = tmp_path / "r.json"
    code = main(["test", str(path), "--task", "full", "--dtype", "fp32", "--batch", "2", "--seq", "32",
                 "--grad-accum", "2", "--gpus", "2", "--device", "cpu", "--steps", "1", "--warmup", "0",
                 "--builder", "builtin", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Per rank (RSS, CPU)" in text and "host RAM, all ranks" in text and "Verdict: FITS" in text
    r = FitTestResult.load(out)
    assert len(r.per_gpu) == 2 and r.workload["gpus"] == 2
    assert any("DistributedDataParallel over 2 ranks" in n for n in r.notes)


def test_a_killed_rank_stops_every_rank(spec):
    # Rank 1 hangs in its first step; rank 0 waits for it in a collective. Killing rank 1
    # from outside must end the whole run, naming rank 1.
    run = MultiFitTestRun(request(FULL.with_(fsdp="full")), spec, fault="hang", fault_rank=1, peer_grace_s=1)
    killed = threading.Event()
    for ev in run.start().events():
        if ev["type"] == "phase" and ev["rank"] == 1 and ev["phase"] == "warmup" and not killed.is_set():
            os.kill(run.ranks[1].proc.pid, signal.SIGKILL)
            killed.set()
        if ev["type"] == "end":
            r = ev["result"]
    assert killed.is_set()
    assert r.status == "crashed", r.message
    assert "rank 1 (cpu) died from SIGKILL" in r.message and "the other rank was stopped" in r.message
    assert r.exit_code == -signal.SIGKILL
    assert [g["status"] for g in r.per_gpu][1] == "crashed"
    assert r.per_gpu[0]["status"] in ("error", "stopped")
    assert_all_gone(run)


def test_oom_on_one_rank_is_the_verdict(spec):
    run = MultiFitTestRun(request(FULL.with_(fsdp="grad-op")), spec, fault="oom", fault_rank=1, peer_grace_s=1)
    r = run.wait(timeout=120)
    assert r.status == "oom" and r.verdict == "does not fit", r.message
    assert r.message.startswith("does not fit: out of memory on rank 1 (cpu) in warmup")
    assert r.phase == "warmup" and r.exit_code == 3
    assert r.per_gpu[1]["status"] == "oom" and r.per_gpu[0]["status"] in ("stopped", "error")
    assert_all_gone(run)


def test_cancel_stops_every_rank(spec):
    run = MultiFitTestRun(request(FULL.with_(fsdp="full")), spec, fault="hang", fault_rank=0,
                          grace_s=1, peer_grace_s=1)
    for ev in run.start().events():
        if ev["type"] == "phase" and ev["phase"] == "warmup":
            run.cancel()
        if ev["type"] == "end":
            r = ev["result"]
    assert r.status == "cancelled" and "every rank was stopped" in r.message, r.message
    assert_all_gone(run)


def test_zero_without_deepspeed_names_the_package(spec):
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    run = MultiFitTestRun(request(FULL.with_(zero=2)), spec, peer_grace_s=1)
    r = run.wait(timeout=120)
    assert r.status == "error", r.message
    assert "'deepspeed' package" in r.message and "--fsdp grad-op" in r.message
    assert_all_gone(run)


# ---- pieces of distributed.py that run in-process ----------------------------------------

def test_params_on_meta_keeps_buffers_and_tied_weights():
    import torch

    from cardfit.core.fittest import distributed as D
    from cardfit.core.fittest.builtin_model import build_builtin

    before = torch.nn.Module.register_parameter
    with D.params_on_meta(torch):
        model, _ = build_builtin(torch, {**TINY, "tie_word_embeddings": True}, {"dtype": "fp32"}, "cpu")
    assert torch.nn.Module.register_parameter is before
    assert all(p.is_meta for p in model.parameters())
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still one tensor
    inv = model.rotary.inv_freq
    assert not inv.is_meta and float(inv[0]) == 1.0  # computed, not empty
    assert len(D.layer_units(model)) == TINY["num_hidden_layers"]


def test_deepspeed_config_follows_the_workload():
    from cardfit.core.fittest.distributed import deepspeed_config

    c = deepspeed_config(Workload(task="full", dtype="fp32", amp="bf16", batch=4, grad_accum=2, gpus=2, zero=3,
                                  offload="params").to_json())
    assert c["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": True},
                                      "offload_param": {"device": "cpu", "pin_memory": True}}
    assert c["bf16"]["enabled"] and not c["fp16"]["enabled"]
    assert c["train_micro_batch_size_per_gpu"] == 4 and c["gradient_accumulation_steps"] == 2
    c = deepspeed_config(FULL.with_(zero=1).to_json())
    assert c["zero_optimization"] == {"stage": 1} and not c["bf16"]["enabled"]


def test_a_rank_outside_the_launcher_says_what_is_missing(monkeypatch):
    from cardfit.core.fittest.distributed import DistributedSetupError, env_ranks

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(name, "1" if name != "MASTER_ADDR" else "127.0.0.1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert env_ranks()["RANK"] == 1
    monkeypatch.delenv("MASTER_PORT")
    with pytest.raises(DistributedSetupError, match="MASTER_PORT"):
        env_ranks()
    monkeypatch.setenv("MASTER_PORT", "x")
    with pytest.raises(DistributedSetupError, match="MASTER_PORT='x'"):
        env_ranks()
