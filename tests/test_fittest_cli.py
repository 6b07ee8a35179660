"""`cardfit test` (cli/test_cmd.py) end to end on the CPU: exit codes, --json, --stream,
--out, --search; faults reach the child through the make_request seam."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from cardfit.cli import main  # noqa: E402
from cardfit.cli import test_cmd  # noqa: E402
from cardfit.core.fittest import launcher  # noqa: E402
from cardfit.core.fittest.result import FitTestResult  # noqa: E402

TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
        "tie_word_embeddings": False, "torch_dtype": "float32"}
FAST = ["--device", "cpu", "--task", "infer", "--dtype", "fp32", "--prompt", "16", "--new", "2",
        "--steps", "1", "--warmup", "0", "--builder", "builtin"]


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "tiny" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(TINY))
    return str(path)


def with_fault(monkeypatch, fault):
    real = test_cmd.make_request
    monkeypatch.setattr(test_cmd, "make_request",
                        lambda args, w: dataclasses.replace(real(args, w), fault=fault))


def test_fits_prints_a_verdict_table_and_saves(model, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(["test", model, *FAST, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Verdict: FITS" in text and "Measured peak (RSS, CPU)" in text and "Predicted" in text
    assert "Tokens / s" in text
    r = FitTestResult.load(out)
    assert r.status == "fits" and r.device == "cpu" and r.workload["prompt"] == 16


def test_json_summary(model, capsys):
    assert main(["test", model, *FAST, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "fits" and doc["status"] == "fits" and doc["schema"] == "cardfit.fittest/1"
    assert doc["predicted_bytes"] > 0 and doc["peak_rss_bytes"] > 0
    assert FitTestResult.from_json(doc).status == "fits"  # the summary is a FitTestResult


def test_stream_echoes_json_lines_then_the_summary(model, monkeypatch, capsys):
    with_fault(monkeypatch, "oom")
    assert main(["test", model, *FAST, "--stream", "--json"]) == 1
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    kinds = [d["type"] for d in lines]
    assert kinds[0] == "hello" and "sample" in kinds and "oom" in kinds
    assert kinds[-1] == "summary" and lines[-1]["verdict"] == "does not fit" and lines[-1]["phase"] == "step"


@pytest.mark.parametrize("fault, code", [("error", 3), ("exit", 3)])
def test_failures_exit_3(model, monkeypatch, capsys, fault, code):
    with_fault(monkeypatch, fault)
    assert main(["test", model, *FAST]) == code
    assert "Verdict:" in capsys.readouterr().out


def test_timeout_exits_3(model, monkeypatch, capsys):
    with_fault(monkeypatch, "hang")
    assert main(["test", model, *FAST, "--time-limit", "1", "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["status"] == "timeout"


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps"),
    (["--device", "tpu:0"], "--device"),
    (["--batch", "0"], "--batch"),
    (["--out", "/no/such/folder/r.json"], "does not exist"),
    (["--python", "/no/such/python"], "does not exist"),
    (["--search", "batch", "--search-range", "x"], "LO:HI"),
])
def test_usage_errors_exit_2(model, capsys, argv, message):
    assert main(["test", model, *FAST, *argv]) == 2
    assert message in capsys.readouterr().err


def test_usage_error_as_json(capsys):
    assert main(["test", "no-such-model-xyz", "--device", "cpu", "--json"]) == 2
    assert "error" in json.loads(capsys.readouterr().out)


def test_unknown_flag_is_argparse_usage(model):
    with pytest.raises(SystemExit) as exc:
        main(["test", model, "--no-such-flag"])
    assert exc.value.code == 2


def test_search_with_a_fake_runner(model, monkeypatch, capsys):
    # The search logic is tested in test_fittest_search; here the CLI wiring, without children.
    def fake_drive(run_, args, label=""):
        b = run_.request.workload.batch
        return FitTestResult(status="fits" if b <= 5 else "oom", message="", peak_rss_bytes=b,
                             predicted_bytes=run_.prediction_bytes)

    monkeypatch.setattr(test_cmd, "_drive", fake_drive)
    monkeypatch.setattr(launcher, "estimator_hint", lambda *a: 4)
    assert main(["test", model, *FAST, "--search", "batch", "--search-range", "1:64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["best"] == 5 and doc["hint"] == 4 and doc["probes"][0]["value"] == 4
    assert main(["test", model, *FAST, "--search", "batch", "--search-range", "8:64"]) == 1
    assert "not even batch 8" in capsys.readouterr().out.lower()


@pytest.mark.skipif(os.name != "posix", reason="SIGINT")
def test_ctrl_c_cancels_the_child(model, tmp_path):
    # A real Ctrl-C (SIGINT to cardfit) while the child hangs in its first step.
    script = ("import dataclasses, os, sys\n"
              "from cardfit.cli import main, test_cmd\n"
              "real = test_cmd.make_request\n"
              "test_cmd.make_request = lambda a, w: dataclasses.replace(real(a, w), fault='hang')\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, "test", model, *FAST, "--stream"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child_pid = None
    lines = []
    for line in proc.stdout:
        ev = json.loads(line)
        lines.append(ev)
        if ev["type"] == "hello":
            child_pid = ev["pid"]
        if ev["type"] == "phase" and ev["phase"] == "step":
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=60)
    lines += [json.loads(ln) for ln in rest.splitlines()]
    assert proc.returncode == 130, err
    assert lines[-1]["type"] == "summary" and lines[-1]["status"] == "cancelled"
    assert any(ev["type"] == "stopped" for ev in lines)  # the child stopped cleanly
    assert "stopping the fit test" in err
    psutil = pytest.importorskip("psutil")
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() != psutil.STATUS_ZOMBIE
