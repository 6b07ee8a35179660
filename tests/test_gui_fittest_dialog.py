"""The fit-test window (gui/fittest_dialog.py) with real child processes on the CPU
(``CARDFIT_FITTEST_DEVICE=cpu``): a tiny model tested end to end through the window,
cancel leaving no process behind, failures shown as results, the interpreter setting."""

from __future__ import annotations

import os
import sys

import pytest
from PySide6.QtCore import QCoreApplication, QThread, Qt

pytest.importorskip("torch")

from cardfit.core.estimate.workload import Workload  # noqa: E402
from cardfit.core.fittest.result import FitTestResult  # noqa: E402
from cardfit.core.specs.hf_config import spec_from_config  # noqa: E402
from gui_support import gui_settings  # noqa: E402,F401

TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
        "tie_word_embeddings": False, "torch_dtype": "float32"}
LORA = Workload(task="lora", dtype="fp32", batch=2, seq=32, lora_r=4)


@pytest.fixture(scope="module")
def spec():
    return spec_from_config(TINY, source="test", id="tiny-llama")


@pytest.fixture
def cpu_device(monkeypatch):
    monkeypatch.setenv("CARDFIT_FITTEST_DEVICE", "cpu")


@pytest.fixture
def make_dialog(qtbot, spec):
    from cardfit.gui.fittest_dialog import FitTestDialog

    made = []

    def make(workload=LORA, card=None, **kw):
        d = FitTestDialog(None, "tiny-llama", spec, workload, card, 0, **kw)
        qtbot.addWidget(d)
        d.show()
        made.append(d)
        return d

    yield make
    for d in made:  # never leave a run behind a test
        if d.worker is not None and d.worker.thread is not None:
            d.worker.cancel(kill=True)
            d.worker.thread.wait(15000)


def wait_result(qtbot, d, timeout=90000) -> FitTestResult:
    qtbot.waitUntil(lambda: d.fit_result is not None, timeout=timeout)
    return d.fit_result


def assert_process_gone(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: not a zombie child of ours
    psutil = pytest.importorskip("psutil")
    if psutil.pid_exists(pid):  # only a recycled pid may remain
        assert psutil.Process(pid).ppid() != os.getpid()


def test_real_cpu_fit_test_end_to_end(qtbot, make_dialog, cpu_device, tmp_path):
    d = make_dialog()
    d.steps.setValue(2)
    assert "set by CARDFIT_FITTEST_DEVICE" in d.summary.text()
    assert d.start_button.isEnabled() and not d.cancel_button.isEnabled() and not d.save_button.isEnabled()
    threads = []
    feed = d.panel.feed
    d.panel.feed = lambda ev: (threads.append(QThread.currentThread()), feed(ev))
    qtbot.mouseClick(d.start_button, Qt.MouseButton.LeftButton)
    assert d.running and d.cancel_button.isEnabled() and not d.start_button.isEnabled()
    r = wait_result(qtbot, d)

    assert r.status == "fits", r.message
    assert d.panel.verdict().startswith("Fits with") and d.panel.verdict().endswith("(CPU run)")
    assert d.panel.sample_count > 0 and len(d.panel.curves["used"].getData()[0]) == d.panel.sample_count
    assert [b[0] for b in d.panel.bands()] == ["init", "build", "warmup", "step", "cleanup"]
    assert d.progress.value() == d.progress.maximum() and d.progress.format() == "done"
    assert threads and all(t is QCoreApplication.instance().thread() for t in threads)  # events reach the UI thread
    assert d.save_button.isEnabled() and d.export_button.isEnabled() and d.start_button.isEnabled()
    assert_process_gone(d.worker.pid)
    out = tmp_path / "result.json"
    assert d.save_result(str(out))
    back = FitTestResult.load(out)
    assert back.status == "fits" and back.model["id"] == "tiny-llama" and len(back.samples) == len(r.samples)


def test_cancel_during_a_run_leaves_no_process(qtbot, make_dialog, cpu_device):
    from dataclasses import replace

    d = make_dialog()
    make = d.make_request
    d.make_request = lambda: replace(make(), fault="hang")  # test-only: the child hangs at its first step
    d.start()
    qtbot.waitUntil(lambda: d.panel.phase == "warmup", timeout=90000)
    pid = d.worker.pid
    assert pid
    qtbot.keyClick(d, Qt.Key.Key_Escape)  # Esc stops a running test (and does not close the window)
    r = wait_result(qtbot, d, timeout=30000)
    assert r.status == "cancelled"
    assert d.panel.verdict() == "Cancelled in warm-up"
    assert d.isVisible()
    d.worker.thread.wait(5000)
    assert_process_gone(pid)


def test_no_cuda_is_a_result_not_a_crash(qtbot, make_dialog, monkeypatch):
    """Without CARDFIT_FITTEST_DEVICE it runs on cuda:0, which this CPU-only torch lacks:
    the child's own explanation is shown as the result."""
    monkeypatch.delenv("CARDFIT_FITTEST_DEVICE", raising=False)
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    d = make_dialog()
    d.start()
    r = wait_result(qtbot, d)
    assert r.status == "error" and "CUDA is not available" in r.message
    assert d.panel.verdict() == "Failed in CUDA init"
    assert "CUDA is not available" in d.panel.detail_label.text() and "CUDA is not available" in d.status.text()
    assert d.isVisible() and d.start_button.isEnabled() and d.progress.format() == "failed"


def test_bad_interpreter_is_an_error_result(qtbot, make_dialog, cpu_device, tmp_path, gui_settings):
    from cardfit.gui import settings as st

    d = make_dialog()
    d.python.setText(str(tmp_path / "no-such-python"))
    d.start()
    r = wait_result(qtbot, d)
    assert r.status == "error" and "does not exist" in r.message
    assert d.panel.verdict().startswith("Failed")
    assert st.get_str(st.open_settings(), "fittest/python") == str(tmp_path / "no-such-python")


def test_frozen_bundle_without_interpreter_explains(qtbot, make_dialog, monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    d = make_dialog()
    assert d.python_help.isVisible() and "Browse" in d.python_help.text()
    assert not d.start_button.isEnabled()
    d.python.setText(sys.executable)
    assert not d.python_help.isVisible() and d.start_button.isEnabled()


def test_interpreter_setting_is_read(qtbot, make_dialog):
    from cardfit.gui import settings as st

    st.open_settings().setValue("fittest/python", "/opt/train/bin/python")
    d = make_dialog()
    assert d.python.text() == "/opt/train/bin/python"
    assert d.make_request().python == "/opt/train/bin/python"


def test_plan_it_cannot_run_is_explained(qtbot, make_dialog):
    d = make_dialog(workload=Workload(task="infer", dtype="gguf", batch=1, prompt=16, new=2))
    assert d.problem.isVisible() and "gguf" in d.problem.text()
    assert not d.start_button.isEnabled()


def test_a_run_past_learned_positions_is_explained_before_start(qtbot):
    from cardfit.core.specs.catalog import catalog_row
    from cardfit.core.specs.hf_config import spec_from_config
    from cardfit.gui.fittest_dialog import FitTestDialog

    gpt2 = spec_from_config(catalog_row("openai-community/gpt2")["config"], source="t", id="gpt2")
    d = FitTestDialog(None, "gpt2", gpt2, Workload(task="infer", dtype="fp16", prompt=1024, new=128), None, 0)
    qtbot.addWidget(d)
    d.show()
    assert d.problem.isVisible() and "1,024 learned positions" in d.problem.text()
    assert not d.start_button.isEnabled()


def test_export_report_uses_the_report_dialog(qtbot, make_dialog, monkeypatch):
    from cardfit.core.hardware.cards import resolve_card
    import cardfit.gui.report_dialog as rd

    seen = {}
    monkeypatch.setattr(rd, "export_report_dialog", lambda parent, report: seen.setdefault("r", report) and "/x.html")
    d = make_dialog(card=resolve_card("h100-sxm"))
    r = FitTestResult.load(os.path.join(os.path.dirname(__file__), "data", "fittest_result_fixture.json"))
    d._on_finished(r)
    assert d.export_button.isEnabled()
    d.export_report()
    assert seen["r"].to_json()["fit_test"] is not None
