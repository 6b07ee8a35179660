"""Tools -> Run fit test...: a non-modal window that runs the current plan for real on the
chosen GPU (a child process, see core/fittest/launcher.py) and plots its memory live.

It shows the plan (model, workload, card, the engine's prediction), the steps and time
limit, the interpreter the child runs under (settings key "fittest/python"; empty = this
app's own Python; a frozen bundle has no torch, so there it explains how to pick one),
Start (Ctrl+Return) / Cancel (Esc; a second press kills at once), the progress by phase, the
``LivePanel``, then Save result... and Export report....

Every ending is shown, never raised: no CUDA, no usable interpreter, a crash, an out of
memory all end as a ``FitTestResult`` in the panel, and the app stays up.

``CARDFIT_FITTEST_DEVICE=cpu`` (for tests and CI only) runs the same pipeline on the CPU,
so a test can drive a real fit test through this window without a GPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMessageBox,
                               QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from cardfit.core.errors import CardfitError
from cardfit.core.fittest.result import FitTestResult
from cardfit.core.units import fmt_bytes
from cardfit.gui import settings as st
from cardfit.gui.fittest_worker import FitTestWorker, start_worker
from cardfit.gui.live_panel import PHASE_NAMES, LivePanel

__all__ = ["FitTestDialog", "DEVICE_ENV", "FROZEN_HELP"]

DEVICE_ENV = "CARDFIT_FITTEST_DEVICE"  # tests / CI only: "cpu" (or "cuda:N") instead of the GPU picked
PYTHON_KEY = "fittest/python"
FROZEN_HELP = (
    "This cardfit app has no PyTorch of its own, so the fit test runs the model under a Python "
    "interpreter that has PyTorch with CUDA: the one of your training environment (for example "
    "~/venv/bin/python, or the python of a conda environment). Choose it with Browse… below; "
    "cardfit remembers it (Tools ▸ Preferences… changes it later).")


def _device_override() -> str | None:
    dev = os.environ.get(DEVICE_ENV, "").strip()
    return dev or None


class FitTestDialog(QDialog):
    """``FitTestDialog(parent, model_ref, spec, workload, card, gpu_index)``; ``show()`` it."""

    def __init__(self, parent: QWidget | None, model_ref: str, spec, workload, card, gpu_index: int | None,
                 *, run_factory=None):
        super().__init__(parent)
        self.setWindowTitle(f"Fit test: {getattr(spec, 'name', None) or model_ref}")
        self.setModal(False)
        self.setWindowFlag(Qt.WindowType.WindowMaximizeButtonHint, True)
        self.model_ref = model_ref
        self.spec = spec
        self.workload = workload
        self.card = card
        self.gpu_index = int(gpu_index or 0)
        self.fit_result: FitTestResult | None = None  # read by the main window's Export report
        self.worker: FitTestWorker | None = None
        self._run_factory = run_factory  # tests: a fake FitTestRun
        self._cancel_presses = 0
        self._running = False
        self._settings = st.open_settings()
        self.device = _device_override() or f"cuda:{self.gpu_index}"
        self.prediction_bytes = self._predict()

        # -- the plan
        self.summary = QLabel(self._summary_text())
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setVisible(False)

        # -- settings of the run
        form = QFormLayout()
        self.steps = QSpinBox()
        self.steps.setRange(1, 1000)
        self.steps.setValue(3)
        self.steps.setToolTip("Measured steps, after the warm-up (training: forward, backward, optimizer "
                              "step; inference: prefill then decode)")
        self.warmup = QSpinBox()
        self.warmup.setRange(0, 100)
        self.warmup.setValue(1)
        self.time_limit = QSpinBox()
        self.time_limit.setRange(10, 7 * 86400)
        self.time_limit.setValue(600)
        self.time_limit.setSuffix(" s")
        self.time_limit.setToolTip("Stop the test after this long (it ends as 'timeout')")
        row = QHBoxLayout()
        row.addWidget(self.steps)
        row.addWidget(QLabel("after warm-up steps:"))
        row.addWidget(self.warmup)
        row.addWidget(QLabel("time limit:"))
        row.addWidget(self.time_limit)
        row.addStretch(1)
        form.addRow("Steps:", row)
        self.python = QLineEdit(st.get_str(self._settings, PYTHON_KEY))
        self.python.setAccessibleName("Fit-test Python interpreter")
        self.python.setPlaceholderText("this app's Python" + ("" if self.frozen else f" ({sys.executable})"))
        self.python.textChanged.connect(self._update_buttons)
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self._browse)
        prow = QHBoxLayout()
        prow.addWidget(self.python, 1)
        prow.addWidget(self.browse)
        form.addRow("Python:", prow)
        self.python_help = QLabel(FROZEN_HELP)
        self.python_help.setWordWrap(True)
        form.addRow(self.python_help)

        # -- buttons
        self.start_button = QPushButton("&Start")
        self.start_button.setToolTip("Start the fit test (Ctrl+Return)")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the fit test (Esc; press again to kill it at once)")
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button = QPushButton("Save &result…")
        self.save_button.clicked.connect(self._save_clicked)
        self.export_button = QPushButton("&Export report…")
        self.export_button.clicked.connect(self.export_report)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.cancel_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        for b in (self.save_button, self.export_button, self.close_button):
            buttons.addWidget(b)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.start)
        QShortcut(QKeySequence("Ctrl+Enter"), self, activated=self.start)

        # -- progress and the plot
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("not started")
        self.progress.setValue(0)
        self.status = QLabel("Press Start to build the model with random weights and run the plan for real.")
        self.status.setWordWrap(True)
        self.panel = LivePanel(self)
        self.panel.set_reference(self.prediction_bytes, self._card_available())

        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.problem)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.panel, 1)
        self.resize(980, 760)
        self._check_plan()
        self._update_buttons()

    # ---- the plan ------------------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        return bool(getattr(sys, "frozen", False))

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _predict(self) -> int | None:
        try:
            from cardfit.core.estimate.estimator import estimate

            return int(estimate(self.spec, self.workload).total_bytes)
        except Exception:  # noqa: BLE001 - the run reports its own prediction
            return None

    def _card_available(self) -> int | None:
        if not self.cuda or self.card is None:
            return None
        return getattr(self.card, "available_bytes", None)

    def _summary_text(self) -> str:
        spec, w = self.spec, self.workload
        name = getattr(spec, "name", None) or self.model_ref
        lines = [f"<b>{_esc(name)}</b>"]
        try:
            n = spec.param_counts().total
            lines[0] += f" ({n / 1e9:.2f}B parameters)" if n >= 1e8 else f" ({n / 1e6:.2f}M parameters)"
        except Exception:  # noqa: BLE001
            pass
        try:
            lines.append(f"Workload: {_esc(w.label())}")
        except Exception:  # noqa: BLE001
            pass
        if self.cuda:
            card = getattr(self.card, "label", None) or f"GPU {self.gpu_index}"
            lines.append(f"Card: {_esc(card)} — runs on {self.device}")
        else:
            lines.append(f"Device: {_esc(self.device)} (set by {DEVICE_ENV}, for tests: host RSS is measured, "
                         "not GPU memory)")
        if self.prediction_bytes is not None:
            pred = f"Predicted peak: {fmt_bytes(self.prediction_bytes, 2)}"
            avail = self._card_available()
            if avail:
                pred += f" of {fmt_bytes(avail, 2)} available"
            lines.append(pred)
        return "<br>".join(lines)

    def _check_plan(self) -> None:
        try:
            from cardfit.core.estimate.estimator import position_limit
            from cardfit.core.errors import FitTestError
            from cardfit.core.fittest.launcher import check_workload

            check_workload(self.workload)
            too_long = position_limit(self.spec, self.workload)
            if too_long:
                raise FitTestError(too_long)
        except CardfitError as exc:
            self._plan_problem = str(exc)
            self.problem.setText(f"This plan cannot be tested as it is: {exc}")
            self.problem.setVisible(True)
        except Exception:  # noqa: BLE001 - the launcher reports it on Start
            self._plan_problem = None
        else:
            self._plan_problem = None

    # ---- state ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    def _update_buttons(self) -> None:
        running = self.running
        need_python = self.frozen and not self.python.text().strip()
        self.python_help.setVisible(need_python)
        self.start_button.setEnabled(not running and not need_python and self._plan_problem is None)
        self.cancel_button.setEnabled(running)
        self.cancel_button.setText("Kill" if running and self._cancel_presses else "Cancel")
        self.steps.setEnabled(not running)
        self.warmup.setEnabled(not running)
        self.time_limit.setEnabled(not running)
        self.python.setEnabled(not running)
        self.browse.setEnabled(not running)
        have = self.fit_result is not None and not running
        self.save_button.setEnabled(have)
        self.export_button.setEnabled(have)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Python interpreter for the fit test",
                                              str(Path(self.python.text()).parent) if self.python.text() else "")
        if path:
            self.python.setText(path)

    def make_request(self):
        from cardfit.core.fittest.launcher import FitTestRequest

        python = self.python.text().strip() or None
        return FitTestRequest(model=self.model_ref, workload=self.workload, gpu_index=self.gpu_index,
                              device=_device_override(), python=python, steps=self.steps.value(),
                              warmup=self.warmup.value(), time_limit_s=float(self.time_limit.value()))

    # ---- actions -------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        if self.running or not self.start_button.isEnabled():
            return
        self._settings.setValue(PYTHON_KEY, self.python.text().strip())
        self.fit_result = None
        self._cancel_presses = 0
        self._total_units = 3 + self.warmup.value() + self.steps.value()  # init, build, steps, cleanup
        self.progress.setRange(0, self._total_units)
        self.progress.setValue(0)
        self.progress.setFormat("starting")
        self.status.setText("Starting the fit-test process…")
        self.panel.reset(keep_reference=False)
        self.panel.set_reference(self.prediction_bytes, self._card_available())
        try:
            request = self.make_request()
        except Exception as exc:  # noqa: BLE001 - a request the launcher refuses is a result
            from cardfit.gui.fittest_worker import error_result

            self._on_finished(error_result(f"the fit test could not run: {exc}", None, self.spec,
                                           self.prediction_bytes))
            return
        self._running = True
        self.worker = start_worker(request, self.spec, run_factory=self._run_factory, on_event=self._on_event,
                                   on_finished=self._on_finished, on_launched=self._on_launched)
        self.panel.start_live()
        self._update_buttons()

    @Slot()
    def cancel(self) -> None:
        if not self.running:
            return
        self._cancel_presses += 1
        kill = self._cancel_presses > 1
        self.worker.cancel(kill=kill)
        self.status.setText("Killing the fit-test process…" if kill else
                            "Stopping the fit test (press Kill to end it at once)…")
        self._update_buttons()

    def reject(self) -> None:
        """Esc: stops a running test; closes the window otherwise."""
        if self.running:
            self.cancel()
            return
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.running:
            self.worker.cancel()  # it ends in the background; the worker thread outlives the window
        super().closeEvent(event)

    # ---- from the worker (queued onto the UI thread) -------------------------------------
    @Slot(object)
    def _on_launched(self, run) -> None:
        pid = getattr(run, "pid", None)
        py = getattr(run, "python", None)
        if pid:
            self.status.setText(f"Running (process {pid}" + (f", {py}" if py else "") + ")…")

    @Slot(object)
    def _on_event(self, ev: dict) -> None:
        self.panel.feed(ev)
        kind = ev.get("type")
        if kind == "phase":
            self._progress_phase(ev)
        elif kind == "built":
            notes = ev.get("notes") or []
            params = ev.get("params")
            text = f"Built with {ev.get('builder')}"
            if isinstance(params, int):
                text += f": {params / 1e6:,.1f}M parameters"
            if notes:
                text += " (" + "; ".join(str(n) for n in notes[:4]) + ")"
            self.status.setText(text)
        elif kind == "oom":
            self.status.setText(f"Out of memory in {PHASE_NAMES.get(ev.get('phase'), ev.get('phase'))}; cleaning up…")
        elif kind == "error":
            self.status.setText(f"Failed: {str(ev.get('message') or '')[:300]}")

    def _progress_phase(self, ev: dict) -> None:
        phase = ev.get("phase")
        w, s = self.warmup.value(), self.steps.value()
        step = ev.get("step") if isinstance(ev.get("step"), int) else 0
        if phase == "init":
            value, text = 0, "CUDA init" if self.cuda else "init"
        elif phase == "build":
            value, text = 1, "building the model"
        elif phase == "warmup":
            value, text = 2 + step, f"warm-up {step + 1} of {w}"
        elif phase == "step":
            value, text = 2 + step, f"step {step - w + 1} of {s}"
        elif phase == "cleanup":
            value, text = 2 + w + s, "cleanup"
        else:
            return
        self.progress.setValue(min(value, self._total_units))
        self.progress.setFormat(text)

    @Slot(object)
    def _on_finished(self, result: FitTestResult) -> None:
        self._running = False
        self.fit_result = result
        self.panel.finish(result)
        if result.status == "fits":
            self.progress.setValue(self.progress.maximum())
        self.progress.setFormat({"fits": "done", "oom": "out of memory", "timeout": "timed out",
                                 "cancelled": "cancelled", "crashed": "crashed"}.get(result.status, "failed"))
        self.status.setText(result.message)
        self._cancel_presses = 0
        self._update_buttons()

    # ---- results -------------------------------------------------------------------------
    def _save_clicked(self) -> None:
        if self.fit_result is None:
            return
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(self.model_ref)).strip("-.")
        path, _ = QFileDialog.getSaveFileName(self, "Save fit-test result",
                                              str(Path.home() / f"cardfit-fittest-{safe or 'model'}.json"),
                                              "Fit-test result (*.json);;All files (*)")
        if path:
            self.save_result(path)

    def save_result(self, path: str) -> bool:
        """Writes the result (atomically); a failure is shown, not raised."""
        if self.fit_result is None:
            return False
        if not Path(path).suffix:
            path += ".json"
        try:
            self.fit_result.save(path)
        except CardfitError as exc:
            QMessageBox.critical(self, "Save result", f"The result was not saved.\n\n{exc}")
            return False
        self.status.setText(f"Result saved to {path}")
        return True

    def export_report(self) -> str | None:
        """The report of this plan with the measurement, through the report dialog."""
        if self.fit_result is None:
            return None
        try:
            from cardfit.core.report.model import build_report
            from cardfit.gui.report_dialog import export_report_dialog
        except ImportError as exc:
            QMessageBox.information(self, "Export report", f"Reports are not available in this build ({exc}).")
            return None
        try:
            machine = getattr(self.parent(), "machine", None)
            report = build_report(self.spec, self.workload, [self.card] if self.card is not None else [],
                                  machine, self.fit_result)
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            QMessageBox.warning(self, "Export report", f"Could not build the report: {exc}")
            return None
        path = export_report_dialog(self, report)
        if path:
            self.status.setText(f"Report saved to {path}")
        return path


def _esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
