"""GUI parts on their own: the hardware panel (fake NVML, the real no-GPU path), the card
picker, the table with 500 models, the breakdown bar, the workload form, the palette."""

from __future__ import annotations

import dataclasses
import os

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette

from cardfit.core.estimate.solver import standard_workloads
from cardfit.core.estimate.workload import Workload
from cardfit.core.hardware.gpu import GpuInfo
from cardfit.core.hardware.machine import MachineInfo, probe_machine
from cardfit.core.specs.catalog import catalog_specs
from cardfit.core.units import GiB, MiB
from fakes import FakeProcess, h100, nvml_library_present, rtx4090, use_fake_nvml  # noqa: F401
from gui_support import H100_JSON, gui_settings, h100_machine  # noqa: F401


def test_panel_shows_gpus_processes_and_ram_from_fake_nvml(qtbot, use_fake_nvml):
    from cardfit.gui.hardware_panel import HardwarePanel

    me = os.getpid()
    use_fake_nvml(h100(compute=[FakeProcess(me, 3 * GiB)]), rtx4090())
    m = probe_machine()
    panel = HardwarePanel()
    qtbot.addWidget(panel)
    panel.set_machine(m)
    boxes = panel.gpu_boxes()
    assert len(boxes) == 2
    assert boxes[0].title.text() == "GPU 0: NVIDIA H100 80GB HBM3"
    assert "processes:" in boxes[0].processes.text() and str(me) in boxes[0].processes.text()
    assert "3.0 GiB" in boxes[0].processes.text()
    assert boxes[0].bar.used == m.gpus[0].memory_used_bytes and boxes[0].bar.total == m.gpus[0].memory_total_bytes
    assert "no other processes" in boxes[1].processes.text()
    assert "driver 550.54.15" in boxes[1].details.text()
    assert not panel.message_box.isVisibleTo(panel)
    # One GPU fewer on the next probe: its box goes away.
    use_fake_nvml(rtx4090())
    panel.set_machine(probe_machine())
    assert len(panel.gpu_boxes()) == 1


def test_panel_without_a_gpu_here(qtbot):
    """CI has no GPU: the real probe, NVML's message, and RAM/CPU still filled."""
    if nvml_library_present():
        pytest.skip("this machine has the NVIDIA driver")
    from cardfit.gui.hardware_panel import HardwarePanel

    m = probe_machine()
    panel = HardwarePanel()
    qtbot.addWidget(panel)
    panel.set_machine(m)
    text = panel.summary()
    assert "No NVIDIA GPU detected" in text
    assert "libnvidia-ml" in text  # NVML's own reason
    assert "available" in panel.host.ram.text() and panel.host.bar.total > 0
    assert panel.gpu_boxes() == []


def test_a_gpu_that_cannot_be_read(qtbot):
    from cardfit.gui.hardware_panel import HardwarePanel

    m = MachineInfo(gpus=[GpuInfo(index=0, name="NVIDIA A100", error="GPU is lost")], nvml_status="ok")
    panel = HardwarePanel()
    qtbot.addWidget(panel)
    panel.set_machine(m)
    assert "could not be read: GPU is lost" in panel.gpu_boxes()[0].memory.text()


def test_monitor_probes_off_thread_and_never_twice_at_once(qtbot, h100_machine):
    import threading

    from cardfit.gui.hardware_panel import HardwareMonitor
    from cardfit.gui.workers import TaskRunner

    gate = threading.Event()
    threads = []

    def slow():
        threads.append(threading.current_thread())
        gate.wait(5)
        return h100_machine

    runner = TaskRunner()
    mon = HardwareMonitor(runner, slow, interval_ms=200)
    got = []
    mon.updated.connect(got.append)
    assert mon.refresh() is True
    assert mon.refresh() is False  # one at a time
    gate.set()
    qtbot.waitUntil(lambda: bool(got))
    assert got[0] is h100_machine and threads[0] is not threading.main_thread()
    runner.wait()


def test_fake_machine_env(monkeypatch):
    from cardfit.gui.hardware_panel import load_machine

    monkeypatch.setenv("CARDFIT_FAKE_MACHINE", str(H100_JSON))
    m = load_machine()
    assert m.gpus[0].name == "NVIDIA H100 80GB HBM3" and m.gpus[0].memory_free_bytes == 85017493504


def test_card_picker(qtbot, h100_machine):
    from cardfit.gui.card_picker import CardPicker

    p = CardPicker()
    qtbot.addWidget(p)
    seen = []
    p.card_changed.connect(seen.append)
    assert p.select_key("gpu:0") is True  # waits for the first probe
    assert p.current_card() is None
    p.set_gpus(h100_machine.gpus)
    assert p.current_card().kind == "detected" and p.current_card().available_bytes == 85017493504
    assert "79.2 GiB free" in p.combo.currentText()
    keys = p.keys()
    assert keys[0] == "gpu:0" and "catalog:rtx-4090" in keys and "catalog:h100-sxm" in keys and keys[-1] == "custom"
    assert len([k for k in keys if k.startswith("catalog:")]) >= 40
    # Free memory moving by a few MiB does not re-emit; by a GiB it does.
    g = dataclasses.replace(h100_machine.gpus[0], memory_free_bytes=85017493504 - 8 * MiB)
    n = len(seen)
    p.set_gpus([g])
    assert len(seen) == n
    g = dataclasses.replace(g, memory_free_bytes=60 * GiB)
    p.set_gpus([g])
    assert len(seen) == n + 1 and seen[-1].available_bytes == 60 * GiB
    assert p.select_key("custom:12") and p.current_card().total_bytes == 12 * GiB
    assert p.select_key("catalog:no-such-card") is False


def test_table_with_500_models(qtbot):
    """500 synthetic models: the cells come from a worker thread, search and sort work."""
    from cardfit.gui.model_table import (FIXED_COLUMNS, SORT_ROLE, STATUS_ROLE, ModelFilterProxy,
                                         ModelTableModel, make_entry)
    from cardfit.gui.workers import TaskRunner
    from cardfit.gui.main_window import cells_for

    base = catalog_specs()
    specs = []
    for i in range(500):
        s = base[i % len(base)]
        specs.append(dataclasses.replace(s, id=f"synthetic/model-{i:03d}", name=f"Synthetic {i:03d} {s.name}",
                                         num_layers=max(1, s.num_layers + (i % 7) - 3)))
    entries = [make_entry(s) for s in specs]
    model = ModelTableModel()
    model.set_workloads(standard_workloads())
    model.set_entries(entries)
    model.set_card(24 * GiB, "RTX 4090")
    proxy = ModelFilterProxy()
    proxy.setSourceModel(model)
    assert proxy.rowCount() == 500
    assert model.index(0, len(FIXED_COLUMNS)).data() == "…"  # not computed yet
    runner = TaskRunner()
    runner.submit(cells_for, entries, model.workloads(), on_result=model.set_cells)
    qtbot.waitUntil(model.has_cells, timeout=45000)  # ~16 s here: 3,000 estimates, the replays in Python
    statuses = {model.index(r, c).data(STATUS_ROLE) for r in range(500) for c in range(2, 8)}
    assert statuses == {"fits", "tight", "no"} or statuses >= {"fits", "no"}
    proxy.set_search("synthetic 12")
    assert 0 < proxy.rowCount() < 500
    assert all("12" in proxy.index(r, 0).data() for r in range(proxy.rowCount()))
    proxy.set_search("")
    col = len(FIXED_COLUMNS) + 3
    proxy.sort(col, Qt.SortOrder.AscendingOrder)
    vals = [proxy.index(r, col).data(SORT_ROLE) for r in range(proxy.rowCount())]
    assert vals == sorted(vals)
    proxy.sort(1, Qt.SortOrder.DescendingOrder)
    assert proxy.index(0, 1).data(SORT_ROLE) >= proxy.index(499, 1).data(SORT_ROLE)
    runner.wait()


def test_breakdown_bar(qtbot):
    from cardfit.core.estimate.estimator import estimate
    from cardfit.gui.breakdown_bar import BreakdownBar

    spec = next(s for s in catalog_specs() if s.id == "meta-llama/Llama-3.1-8B")
    e = estimate(spec, Workload(task="lora"))
    bar = BreakdownBar()
    qtbot.addWidget(bar)
    bar.resize(500, bar.heightForWidth(500))
    bar.set_estimate(e, 24 * GiB, "RTX 4090")
    assert "Weights" in bar.text() and "of 24.0 GiB free" in bar.text()
    assert bar.accessibleDescription() == bar.text()
    img = bar.grab().toImage()  # paints without error
    assert not img.isNull()
    assert len(bar._segments) == len([c for c in e.components if c.bytes > 0])
    assert bar.heightForWidth(200) > bar.heightForWidth(1000)  # the legend wraps
    bar.set_estimate(e, 4 * GiB, "tiny")  # over the card
    bar.grab()
    bar.set_estimate(None, None)
    assert bar.text() == ""


@pytest.mark.parametrize("w", [
    Workload(),
    Workload(task="infer", dtype="nf4", batch=4, prompt=8000, new=500, kv_dtype="fp8", attn="eager"),
    Workload(task="lora", lora_r=64, lora_targets="all", grad_ckpt=True, seq=4096, batch=2),
    Workload(task="qlora", lora_r=8, lora_targets="qkvo", optim="paged-adamw8bit"),
    Workload(task="full", dtype="fp32", amp="bf16", optim="adamw8bit", gpus=4, zero=3, offload="optimizer"),
    Workload(task="galore", galore_rank=256, gpus=2, fsdp="full"),
])
def test_workload_form_round_trip(qtbot, w):
    from cardfit.gui.planner import WorkloadForm

    f = WorkloadForm()
    qtbot.addWidget(f)
    f.set_workload(w)
    assert f.workload(w.gpus) == w


def test_palette_follows_light_and_dark():
    from cardfit.gui import theme

    light, dark = QPalette(), QPalette()
    light.setColor(QPalette.ColorRole.Window, QColor("#f0f0f0"))
    dark.setColor(QPalette.ColorRole.Window, QColor("#202020"))
    assert not theme.is_dark(light) and theme.is_dark(dark)
    for s in ("fits", "tight", "no"):
        assert theme.status_fill(s, light) != theme.status_fill(s, dark)
        # Text stays readable on its fill: light text on dark fills and the reverse.
        assert (theme.status_text(s, dark).lightness() > theme.status_fill(s, dark).lightness())
        assert (theme.status_text(s, light).lightness() < theme.status_fill(s, light).lightness())
