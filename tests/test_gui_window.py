"""The advisor window driven as a user would: search, batch, card, adding models (input,
drag and drop), keyboard navigation, inline workload errors, and the session restored."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent

from cardfit.core.errors import UsageError
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.catalog import catalog_row
from gui_support import cell_status, gui_settings, h100_machine, make_window, visible_names  # noqa: F401


def _write_config(folder, model_id="Qwen/Qwen2.5-0.5B", name="my-model"):
    d = folder / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(catalog_row(model_id)["config"]))
    return d


def test_window_shows_the_machine_the_catalog_and_a_plan(make_window):
    w = make_window()
    assert w.machine is not None and w.machine.gpus[0].name == "NVIDIA H100 80GB HBM3"
    text = w.hardware.summary()
    assert "79.2 GiB free" in text and "of 79.6 GiB" in text
    assert "580.159.04" in w.hardware.gpu_boxes()[0].details.text()
    assert "CUDA 13.0" in w.hardware.gpu_boxes()[0].details.text()
    assert "125.3 GiB available" in w.hardware.host.ram.text()
    # The detected GPU is the default card, judged on its free memory.
    assert w.current_card.kind == "detected" and w.current_card.gpu_index == 0
    assert w.table_model.rowCount() >= 70
    assert w.table_model.has_cells()
    # Every standard workload is a column, coloured by verdict.
    titles = [t for t, _ in w.table_model.workloads()]
    assert titles == ["Inference bf16", "Inference int8", "Inference 4-bit", "LoRA bf16", "QLoRA", "Full fine-tune"]
    status, text = cell_status(w, "Llama 3.1 8B", "Inference bf16")
    assert status == "fits" and text.endswith("GiB")
    assert cell_status(w, "Llama 3.1 405B", "Inference bf16")[0] == "no"
    # A model is selected and planned.
    assert w.current_spec is not None and w.planner.result is not None
    assert w.planner.title.text() == w.current_spec.name


def test_cell_tooltip_has_the_breakdown(make_window):
    from cardfit.gui.model_table import FIXED_COLUMNS

    w = make_window()
    row = w.table_model.row_of("meta-llama/Llama-3.1-8B")
    tip = w.table_model.index(row, len(FIXED_COLUMNS)).data(Qt.ItemDataRole.ToolTipRole)
    assert "Weights" in tip and "KV cache" in tip and "Total" in tip and "to spare" in tip


def test_typing_in_the_search_filters_the_table(make_window, qtbot):
    w = make_window()
    total = w.proxy.rowCount()
    qtbot.keyClicks(w.search, "qwen3 8")
    names = visible_names(w)
    assert names and all("qwen3" in n.lower() and "8" in n for n in names)
    assert "Qwen3 8B" in names and len(names) < total
    assert f"{len(names)} of {total} models" in w.count_label.text()
    w.search.clear()
    assert w.proxy.rowCount() == total


def test_changing_batch_updates_the_planner(make_window, qtbot):
    w = make_window(restore=False, initial_model="meta-llama/Llama-3.1-8B",
                    initial_workload=Workload(task="lora", lora_targets="all", grad_ckpt=True))
    assert w.current_model_ref == "meta-llama/Llama-3.1-8B"
    before = w.planner.result.estimate.total_bytes
    assert "Needs" in w.planner.verdict.text() and "fits" in w.planner.verdict.text()
    w.planner.form.batch.setFocus()
    w.planner.form.batch.selectAll()
    qtbot.keyClicks(w.planner.form.batch, "8")
    qtbot.keyClick(w.planner.form.batch, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.planner.result is not None and w.planner.result.estimate.workload.batch == 8)
    after = w.planner.result.estimate.total_bytes
    assert after > before
    assert w.current_workload.batch == 8
    assert w.planner.bar.estimate.total_bytes == after
    assert "Activations" in w.planner.bar.text()
    # Largest batch / sequence and ranked plans are shown.
    assert "Largest batch that fits" in w.planner.limits.text()
    assert w.planner.plans.topLevelItemCount() >= 3
    assert w.planner.sentence.text()


def test_picking_a_card_rejudges_the_table(make_window):
    w = make_window()
    assert cell_status(w, "Llama 3.1 70B", "Inference 4-bit")[0] == "fits"  # 40 GiB on an 80 GiB H100
    combo = w.picker.combo
    combo.setCurrentIndex(combo.findData("catalog:rtx-4090"))
    assert w.current_card.id == "rtx-4090"
    assert cell_status(w, "Llama 3.1 70B", "Inference 4-bit")[0] == "no"
    assert cell_status(w, "Llama 3.2 1B", "Inference bf16")[0] == "fits"
    assert "RTX 4090" in w.count_label.text()
    # A custom size.
    combo.setCurrentIndex(combo.findData("custom"))
    assert w.picker.custom.isVisibleTo(w.picker)
    w.picker.custom.setValue(48)
    assert w.current_card.kind == "custom" and w.current_card.total_bytes == 48 * 1024**3
    assert cell_status(w, "Llama 3.1 70B", "Inference 4-bit")[0] == "fits"


def test_adding_a_config_file_adds_a_row(make_window, qtbot, tmp_path):
    w = make_window()
    d = _write_config(tmp_path)
    qtbot.keyClicks(w.add_input, str(d / "config.json"))
    qtbot.keyClick(w.add_input, Qt.Key.Key_Return)
    ref = str((d / "config.json").resolve())
    qtbot.waitUntil(lambda: w.table_model.has_cells(ref), timeout=10000)
    assert w.current_model_ref == ref and w.current_spec.name == "my-model"
    qtbot.waitUntil(lambda: w.planner.result is not None and w.planner.result.estimate.model_name == "my-model")
    assert cell_status(w, "my-model", "Inference bf16")[0] == "fits"
    assert "Added my-model" in w.last_message


def test_adding_a_bad_file_shows_an_error_not_a_crash(make_window, qtbot, tmp_path):
    w = make_window()
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    rows = w.table_model.rowCount()
    w.add_model(str(bad))
    qtbot.waitUntil(lambda: w.message.isVisible(), timeout=10000)
    assert "Could not add" in w.last_message and "config.json" in w.last_message
    assert w.table_model.rowCount() == rows


def test_dropping_a_folder_adds_it(make_window, qtbot, tmp_path):
    w = make_window()
    d = _write_config(tmp_path, "meta-llama/Llama-3.2-1B", "dropped-model")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(d))])
    ev = QDropEvent(QPoint(10, 10).toPointF(), Qt.DropAction.CopyAction, mime,
                    Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    w.dropEvent(ev)
    qtbot.waitUntil(lambda: w.table_model.has_cells(str(d.resolve())), timeout=10000)
    assert w.current_spec.name == "dropped-model"
    # Delete removes a model the user added.
    w.remove_selected_model()
    assert w.table_model.row_of(str(d.resolve())) < 0


def test_keyboard_navigation(make_window, qtbot):
    w = make_window()
    w.activateWindow()
    qtbot.waitUntil(lambda: w.isActiveWindow())
    qtbot.keyClick(w, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert w.search.hasFocus()
    qtbot.keyClicks(w.search, "llama 3.2")
    qtbot.keyClick(w.search, Qt.Key.Key_Down)
    assert w.table.hasFocus()
    first = w.current_model_ref
    assert "Llama-3.2" in first
    qtbot.keyClick(w.table, Qt.Key.Key_Down)
    assert w.current_model_ref != first and "Llama-3.2" in w.current_model_ref
    qtbot.waitUntil(lambda: w.planner.result is not None
                    and w.planner.result.estimate.model_id == w.current_model_ref)


def test_invalid_workload_is_shown_inline(make_window, qtbot):
    w = make_window()
    form = w.planner.form
    form.task.setCurrentIndex(form.task.findData("full"))
    form.sharding.setCurrentIndex(form.sharding.findData("zero3"))
    assert w.planner.error_label.isVisibleTo(w.planner)
    assert "several GPUs" in w.planner.error_label.text()
    assert not w.planner.fit_button.isEnabled()
    w.picker.count.setValue(4)
    assert w.planner.error is None and not w.planner.error_label.isVisibleTo(w.planner)
    qtbot.waitUntil(lambda: w.planner.result is not None and w.planner.result.estimate.workload.zero == 3)
    assert w.current_workload.gpus == 4 and "per GPU" in w.planner.verdict.text()
    with pytest.raises(UsageError):
        Workload(zero=3)


def test_using_a_ranked_plan_sets_the_form(make_window, qtbot):
    w = make_window(restore=False, initial_model="meta-llama/Llama-3.1-70B",
                    initial_workload=Workload(task="lora"))
    item = w.planner.plans.topLevelItem(w.planner.plans.topLevelItemCount() - 1)
    chosen = item.data(0, Qt.ItemDataRole.UserRole)
    w.planner.plans.itemActivated.emit(item, 0)
    assert w.current_workload.task == chosen.task
    qtbot.waitUntil(lambda: w.planner.result is not None
                    and w.planner.result.estimate.workload == w.current_workload)


def test_context_changes_the_inference_columns(make_window, qtbot):
    w = make_window()
    before = cell_status(w, "Llama 3.1 8B", "Inference bf16")[1]
    w.context.setCurrentIndex(w.context.findData(131072))
    qtbot.waitUntil(lambda: w.table_model.has_cells())
    after = cell_status(w, "Llama 3.1 8B", "Inference bf16")[1]
    assert float(after.split()[0]) > float(before.split()[0])
    assert w.current_model_ref is not None


def test_session_is_restored(make_window, qtbot, tmp_path):
    w = make_window()
    d = _write_config(tmp_path)
    w.add_model(str(d))
    qtbot.waitUntil(lambda: w.table_model.has_cells(str(d.resolve())), timeout=10000)
    w.select_model("Qwen/Qwen3-8B")
    w.planner.set_workload(Workload(task="qlora", batch=3, seq=4096))
    w.picker.combo.setCurrentIndex(w.picker.combo.findData("catalog:rtx-3090"))
    w.context.setCurrentIndex(w.context.findData(8192))
    w.search.setText("qwen")
    w.resize(1111, 777)
    w.close()

    w2 = make_window()
    assert w2.current_model_ref == "Qwen/Qwen3-8B"
    assert w2.current_workload.task == "qlora" and w2.current_workload.batch == 3
    assert w2.current_workload.seq == 4096
    assert w2.current_card.id == "rtx-3090"
    assert w2.search.text() == "qwen"
    assert "Qwen3 8B" in visible_names(w2) and "Llama 3.1 8B" not in visible_names(w2)
    assert w2.context.currentData() == 8192
    assert abs(w2.size().width() - 1111) <= 40  # restored, not the 1400 default (frame margins vary)
    qtbot.waitUntil(lambda: w2.table_model.row_of(str(d.resolve())) >= 0, timeout=10000)


def test_saved_detected_gpu_falls_back_without_a_gpu(make_window, gui_settings):
    from cardfit.core.hardware.machine import MachineInfo
    from cardfit.gui import settings as st

    s = st.open_settings()
    s.setValue("card/key", "gpu:0")
    s.sync()
    w = make_window(machine=MachineInfo(nvml_status="library_missing", nvml_message="NVML library not found"))
    assert w.current_card.kind == "catalog" and w.current_card.id == "rtx-4090"
    assert "No NVIDIA GPU detected" in w.hardware.summary()


def test_fit_test_and_reports_without_their_modules(make_window, monkeypatch):
    import sys

    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: shown.append(a[2]))
    # Never a modal dialog in a test, whatever went wrong.
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    for mod in ("cardfit.gui.fittest_dialog", "cardfit.gui.report_dialog", "cardfit.core.report.model",
                "cardfit.gui.report_view"):
        monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
    w = make_window()
    w.act_fit.trigger()
    w.act_export.trigger()
    w.act_open_report.trigger()
    assert len(shown) == 3
    assert "not available" in shown[0] and "fittest_dialog" in shown[0]
    assert "not available" in shown[1]


def test_fit_test_opens_the_dialog_with_the_plan(make_window, monkeypatch):
    import sys
    import types

    from PySide6.QtWidgets import QDialog

    got = {}

    class FakeDialog(QDialog):
        def __init__(self, parent, model_ref, spec, workload, card, gpu_index):
            super().__init__(parent)
            got.update(model_ref=model_ref, spec=spec, workload=workload, card=card, gpu=gpu_index)

    mod = types.ModuleType("cardfit.gui.fittest_dialog")
    mod.FitTestDialog = FakeDialog
    monkeypatch.setitem(sys.modules, "cardfit.gui.fittest_dialog", mod)
    w = make_window()
    w.act_fit.trigger()
    assert got["model_ref"] == w.current_model_ref and got["spec"] is w.current_spec
    assert got["workload"] == w.current_workload and got["card"] == w.current_card and got["gpu"] == 0


def test_no_torch_in_the_gui_process(tmp_path):
    """Building and populating the window never imports torch (in a fresh interpreter)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from gui_support import H100_JSON

    code = (
        "import sys\n"
        "from cardfit.gui.app import make_app, _wait_until\n"
        "from cardfit.gui import settings as st\n"
        f"st.redirect({str(tmp_path)!r})\n"
        "app = make_app()\n"
        "from cardfit.gui.main_window import MainWindow\n"
        "w = MainWindow(start_monitor=False); w.show()\n"
        "ok = _wait_until(app, w.is_populated, 30)\n"
        "w.close()\n"
        "print('populated', ok, 'torch', 'torch' in sys.modules)\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", CARDFIT_FAKE_MACHINE=str(H100_JSON))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(Path(__file__).parent), timeout=120)
    assert "populated True torch False" in out.stdout, out.stdout + out.stderr


def test_export_report_builds_the_current_plan(make_window, monkeypatch):
    rd = pytest.importorskip("cardfit.gui.report_dialog")
    pytest.importorskip("cardfit.core.report.model")
    got = []
    monkeypatch.setattr(rd, "export_report_dialog", lambda parent, report, *a, **k: got.append(report) or None)
    w = make_window(restore=False, initial_model="meta-llama/Llama-3.1-8B", initial_workload=Workload(task="qlora"))
    w.act_export.trigger()
    assert len(got) == 1
    doc = got[0].to_json()
    assert "Llama" in json.dumps(doc) and "qlora" in json.dumps(doc)


def test_a_run_longer_than_gpt2s_positions_is_flagged(make_window, qtbot):
    # GPT-2 has 1,024 learned positions: 1,024 + 128 tokens fail on a real card (the H200
    # ended such a run in a device-side assert), so the planner says so in red.
    w = make_window(restore=False, initial_model="openai-community/gpt2",
                    initial_workload=Workload(task="infer", dtype="fp16", prompt=1024, new=128))
    qtbot.waitUntil(lambda: w.planner.result is not None)
    assert "1,024 learned positions" in w.planner.verdict.text()
    w.planner.form.prompt.setFocus()
    w.planner.form.prompt.selectAll()
    qtbot.keyClicks(w.planner.form.prompt, "896")
    qtbot.keyClick(w.planner.form.prompt, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.planner.result is not None and w.planner.result.estimate.workload.prompt == 896)
    assert "learned positions" not in w.planner.verdict.text()
