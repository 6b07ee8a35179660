"""The advisor window: the hardware panel, the card picker, the model table and the planner.

State a caller (fit-test dialog, report export, tests) reads: ``current_model_ref``,
``current_spec``, ``current_workload``, ``current_card`` and ``machine``. Anything slower
than a frame (probing, loading the catalog, resolving a model, estimates) runs on the
window's ``TaskRunner``; the UI thread only paints and reacts.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QEvent, QModelIndex, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QMainWindow, QMessageBox, QPushButton, QScrollArea,
                               QSplitter, QTableView, QVBoxLayout, QWidget)

from cardfit import __version__
from cardfit.core.estimate.solver import fit_matrix, standard_workloads
from cardfit.core.estimate.workload import Workload
from cardfit.core.hardware.cards import Card
from cardfit.core.hardware.machine import MachineInfo
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.gui import settings as st
from cardfit.gui import theme
from cardfit.gui.card_picker import CardPicker, card_key
from cardfit.gui.hardware_panel import HardwareMonitor, HardwarePanel, load_machine
from cardfit.gui.model_table import (REF_ROLE, ModelEntry, ModelFilterProxy, ModelTableModel,
                                     compute_cells, make_entry)
from cardfit.gui.planner import PlannerPanel
from cardfit.gui.workers import TaskRunner

CONTEXTS = [2048, 4096, 8192, 16384, 32768, 131072]
DEFAULT_CONTEXT = 4096
MODEL_FILTER = "Model files (config.json *.json *.gguf *.safetensors);;All files (*)"


def load_catalog_entries() -> list[ModelEntry]:
    from cardfit.core.specs.catalog import catalog_specs

    return [make_entry(s) for s in catalog_specs()]


def resolve_entry(ref: str) -> ModelEntry:
    """A user's model (path or Hub id) as a table row. Paths are kept absolute."""
    from cardfit.core.specs.resolve import resolve_model

    p = Path(ref).expanduser()
    if p.exists():
        ref = str(p.resolve())
    spec = resolve_model(ref)
    return make_entry(spec, ref=ref, origin="added")


def resolve_entries(refs: list[str]) -> tuple[list[ModelEntry], list[str]]:
    ok, failed = [], []
    for r in refs:
        try:
            ok.append(resolve_entry(r))
        except Exception as exc:  # noqa: BLE001 - a model that moved away is reported, not fatal
            failed.append(f"{r}: {exc}")
    return ok, failed


def cells_for(entries: list[ModelEntry], workloads: list[tuple[str, Workload]]):
    """The fit matrix's estimates per row (worker thread), through core's ``fit_matrix``;
    row by row when one odd spec makes the whole matrix fail."""
    try:
        m = fit_matrix([e.spec for e in entries], 1, "card", workloads)
        return {e.ref: list(ests) for e, (_, ests) in zip(entries, m.rows)}
    except Exception:  # noqa: BLE001
        return compute_cells(entries, workloads)


class ModelTableView(QTableView):
    """The table: Enter opens nothing (selection already drives the planner); Delete
    removes a model the user added."""

    delete_pressed = Signal()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.delete_pressed.emit()
            return
        super().keyPressEvent(event)


class SearchBox(QLineEdit):
    """Down / Enter moves into the table."""

    to_table = Signal()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Down, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.to_table.emit()
            return
        super().keyPressEvent(event)


class MainWindow(QMainWindow):
    populated = Signal()
    first_painted = Signal()

    def __init__(self, machine_source=load_machine, restore: bool = True, start_monitor: bool = True,
                 initial_model: str | None = None, initial_workload: Workload | None = None,
                 initial_card: str | None = None):
        super().__init__()
        self.current_model_ref: str | None = None
        self.current_spec: ModelSpec | None = None
        self.current_workload: Workload | None = None
        self.current_card: Card | None = None
        self.machine: MachineInfo | None = None
        self._painted = False
        self._models_loaded = False
        self._pending_select: str | None = None
        self._dialogs: list[QWidget] = []
        self.settings = st.open_settings()
        self.runner = TaskRunner(self)
        self.setWindowTitle("cardfit — which LLMs fit your GPU")
        icon = Path(__file__).resolve().parent.parent / "resources" / "icons" / "cardfit.svg"
        if icon.exists():
            self.setWindowIcon(QIcon(str(icon)))
        self.setAcceptDrops(True)

        # -- widgets ---------------------------------------------------------------------------
        self.hardware = HardwarePanel()
        self.picker = CardPicker()
        self.context = QComboBox()
        for c in CONTEXTS:
            self.context.addItem(f"{c // 1024}k tokens", c)
        self.context.setCurrentIndex(CONTEXTS.index(DEFAULT_CONTEXT))
        self.context.setAccessibleName("Inference context")
        self.context.setToolTip("Prompt + generated tokens of the inference columns")
        ctx_label = QLabel("Inference con&text:")
        ctx_label.setBuddy(self.context)

        self.search = SearchBox()
        self.search.setPlaceholderText("Search models (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search models")
        self.add_input = QLineEdit()
        self.add_input.setPlaceholderText("Add: Hub id (org/name) or path to config.json, .gguf, .safetensors, folder")
        self.add_input.setAccessibleName("Add a model by Hub id or path")
        self.add_button = QPushButton("&Add")
        self.add_button.setToolTip("Add the model named on the left (or use File ▸ Add model…, or drop files here)")

        self.table_model = ModelTableModel(self)
        self.proxy = ModelFilterProxy(self)
        self.proxy.setSourceModel(self.table_model)
        self.table = ModelTableView()
        self.table.setModel(self.proxy)
        # No sort until the user clicks a header: the catalog's own order (by family) first.
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setHighlightSections(False)
        self.table.setWordWrap(False)
        self.table.setAccessibleName("Models")
        self.table.setTabKeyNavigation(False)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()

        self.planner = PlannerPanel(self.runner)
        scroll = QScrollArea()
        scroll.setWidget(self.planner)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.search, 1)
        ll.addLayout(row)
        ll.addWidget(self.table, 1)
        add_row = QHBoxLayout()
        add_row.addWidget(self.add_input, 1)
        add_row.addWidget(self.add_button)
        ll.addLayout(add_row)
        ll.addWidget(self.message)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(scroll)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([860, 560])
        self.splitter.setChildrenCollapsible(False)

        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(8, 8, 8, 4)
        cl.addWidget(self.hardware)
        bar = QHBoxLayout()
        bar.addWidget(self.picker, 0)
        bar.addSpacing(16)
        bar.addWidget(ctx_label)
        bar.addWidget(self.context)
        bar.addStretch(1)
        self.legend = QLabel()
        bar.addWidget(self.legend)
        cl.addLayout(bar)
        cl.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        self.count_label = QLabel()
        self.statusBar().addPermanentWidget(self.count_label)
        self._update_legend()

        self._make_menus()
        self.setTabOrder(self.search, self.table)
        self.setTabOrder(self.table, self.add_input)
        self.setTabOrder(self.add_input, self.add_button)

        # -- state ---------------------------------------------------------------------------
        self.table_model.set_workloads(standard_workloads(context=DEFAULT_CONTEXT))
        if restore:
            self._restore(initial_model, initial_workload, initial_card)
        else:
            if initial_workload is not None:
                self.planner.set_workload(initial_workload)
            if initial_card:
                self.picker.select_key(initial_card)
            self._pending_select = initial_model
        self.current_workload = self.planner.workload

        # -- signals ---------------------------------------------------------------------------
        self.search.textChanged.connect(self._on_search)
        self.search.to_table.connect(self._focus_table)
        self.add_input.returnPressed.connect(self._add_from_input)
        self.add_button.clicked.connect(self._add_from_input)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_row)
        self.table.delete_pressed.connect(self.remove_selected_model)
        self.proxy.layoutChanged.connect(self._update_count)
        self.proxy.rowsInserted.connect(self._update_count)
        self.proxy.rowsRemoved.connect(self._update_count)
        self.proxy.modelReset.connect(self._update_count)
        self.picker.card_changed.connect(self._on_card)
        self.picker.gpus_changed.connect(self._on_gpus)
        self.context.currentIndexChanged.connect(self._on_context)
        self.planner.workload_changed.connect(self._on_workload)
        self.planner.result_ready.connect(lambda _r: self._check_populated())
        self.planner.fit_test_requested.connect(self.run_fit_test)
        self.planner.export_requested.connect(self.export_report)
        self.runner.busy_changed.connect(self._on_busy)

        self.monitor = HardwareMonitor(self.runner, machine_source,
                                       interval_ms=st.get_int(self.settings, "hardware/interval_ms", 1000),
                                       parent=self)
        self.monitor.updated.connect(self._on_machine)
        self.monitor.failed.connect(self.hardware.show_error)
        if start_monitor:
            self.monitor.start()
        else:
            self.monitor.refresh()
        if self.picker.current_card() is not None:
            self._on_card(self.picker.current_card())
        self.runner.submit(load_catalog_entries, on_result=self._on_catalog,
                           on_error=lambda e: self.show_message(f"could not load the model catalog: {e}", error=True))

    # -- menus ---------------------------------------------------------------------------------

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    def _make_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.act_add = self._action(f, "&Add model…", self.add_model_dialog, QKeySequence.StandardKey.Open,
                                    "Add a config.json, .gguf or .safetensors file")
        self.act_add_folder = self._action(f, "Add model &folder…", self.add_folder_dialog, None,
                                           "Add a model folder (config.json and weights)")
        f.addSeparator()
        self.act_open_report = self._action(f, "&Open report…", self.open_report, None,
                                            "Open a report saved as JSON")
        self.act_export = self._action(f, "&Export report…", self.export_report, "Ctrl+E",
                                       "Save the current plan as a report")
        f.addSeparator()
        self.act_quit = self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_quit.setShortcut(QKeySequence("Ctrl+Q"))
        e = mb.addMenu("&Edit")
        self.act_find = self._action(e, "&Find model", self.focus_search, QKeySequence.StandardKey.Find)
        self.act_remove = self._action(e, "&Remove added model", self.remove_selected_model, None)
        t = mb.addMenu("&Tools")
        self.act_fit = self._action(t, "Run &fit test…", self.run_fit_test, "Ctrl+T",
                                    "Run the current plan on the GPU and measure its peak")
        self.act_refresh = self._action(t, "&Refresh hardware", self.refresh_hardware, "F5")
        t.addSeparator()
        self.act_prefs = self._action(t, "&Preferences…", self.preferences, QKeySequence.StandardKey.Preferences)
        h = mb.addMenu("&Help")
        self.act_about = self._action(h, "&About cardfit", self.about)

    # -- restore / save --------------------------------------------------------------------------

    def _restore(self, model: str | None, workload: Workload | None, card: str | None) -> None:
        s = self.settings
        geo = s.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1400, 880)
        split = s.value("window/splitter")
        if split is not None:
            self.splitter.restoreState(split)
        ctx = st.get_int(s, "table/context", DEFAULT_CONTEXT)
        i = self.context.findData(ctx)
        if i >= 0 and ctx != DEFAULT_CONTEXT:
            self.context.setCurrentIndex(i)
            self.table_model.set_workloads(standard_workloads(context=ctx))
        self.picker.set_gpu_count(st.get_int(s, "card/gpus", 1))
        self.planner.gpus = self.picker.gpu_count()
        w = workload or st.load_workload(s)
        if w is not None:
            self.planner.set_workload(w)
        key = card or st.get_str(s, "card/key")
        if key:
            self.picker.select_key(key)
        self.search.setText(st.get_str(s, "table/search"))
        self.proxy.set_search(self.search.text())
        self._pending_select = model or st.get_str(s, "model/last") or None

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/splitter", self.splitter.saveState())
        s.setValue("table/search", self.search.text())
        s.setValue("table/context", self.context.currentData())
        s.setValue("card/gpus", self.picker.gpu_count())
        if self.picker.current_key():
            s.setValue("card/key", self.picker.current_key())
        if self.current_model_ref:
            s.setValue("model/last", self.current_model_ref)
        if self.current_workload is not None:
            st.save_workload(s, self.current_workload)
        st.set_list(s, "models/user", [e.ref for e in self.table_model.entries() if e.origin == "added"])
        s.sync()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.save_settings()
        self.monitor.stop()
        self.runner.wait(3000)
        for d in self._dialogs:
            d.close()
        super().closeEvent(event)

    # -- first paint and "populated" -------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_painted.emit()

    def is_populated(self) -> bool:
        """Hardware read, models listed, every cell estimated and the planner's result in:
        what ``--screenshot`` waits for."""
        if self.machine is None or not self._models_loaded or not self.table_model.has_cells():
            return False
        if self.current_card is None:
            return False
        if self.current_spec is not None and (self.planner.result is None and self.planner.error is None):
            return False
        return self.runner.is_idle() or self.runner.pending() == self.runner.pending("hardware")

    def _check_populated(self) -> None:
        if self.is_populated():
            self.populated.emit()

    def _on_busy(self, busy: bool) -> None:
        if not busy:
            self._check_populated()

    # -- hardware --------------------------------------------------------------------------------

    def refresh_hardware(self) -> None:
        self.statusBar().showMessage("Reading the hardware…", 1500)
        self.monitor.refresh()

    def _on_machine(self, m: MachineInfo) -> None:
        self.machine = m
        self.hardware.set_machine(m)
        self.picker.set_gpus(m.gpus)
        card = self.picker.current_card()
        if card is not None and card.kind == "detected":
            self.planner.ram_available = m.host.ram_available_bytes
        self._check_populated()

    def _ram_available(self) -> int | None:
        return self.machine.host.ram_available_bytes if self.machine is not None else None

    def _on_card(self, card: Card) -> None:
        self.current_card = card
        self.table_model.set_card(card.available_bytes, card.name)
        self.planner.set_card(card, self.picker.gpu_count(), self._ram_available())
        self.settings.setValue("card/key", card_key(card))
        self._update_count()

    def _on_gpus(self, n: int) -> None:
        self.planner.set_gpus(n)
        self.settings.setValue("card/gpus", n)

    # -- models ----------------------------------------------------------------------------------

    def _fit_columns(self) -> None:
        fm = self.table.fontMetrics()
        names = [e.name for e in self.table_model.entries()[:2000]]
        pad = 3 * fm.horizontalAdvance("M")
        width = max([fm.horizontalAdvance(n) for n in names] + [fm.horizontalAdvance("Model")]) + pad
        self.table.setColumnWidth(0, min(width, 26 * fm.horizontalAdvance("m")))
        self.table.setColumnWidth(1, fm.horizontalAdvance("000.0 B") + pad)
        cell = max(fm.horizontalAdvance("000.0 GiB"), fm.horizontalAdvance("Inference")) + pad
        for c in range(2, self.table_model.columnCount()):
            self.table.setColumnWidth(c, cell)

    def _on_catalog(self, entries: list[ModelEntry]) -> None:
        self.table_model.set_entries(entries)
        self._fit_columns()
        self._models_loaded = True
        self._request_cells(entries)
        refs = st.get_list(self.settings, "models/user")
        if refs:
            self.runner.submit(resolve_entries, refs, on_result=self._on_user_models)
        self._apply_pending_select()
        if not self.table.currentIndex().isValid() and self.proxy.rowCount():
            self.select_model(self.proxy.index(0, 0).data(REF_ROLE))
        self._update_count()

    def _on_user_models(self, result) -> None:
        entries, failed = result
        for e in entries:
            self.table_model.add_entry(e)
        if entries:
            self._request_cells(entries, key=None)
        if failed:
            self.show_message("Could not reload: " + "; ".join(failed), error=True)
        self._apply_pending_select()

    def _apply_pending_select(self) -> None:
        ref = self._pending_select
        if not ref:
            return
        if self.table_model.row_of(ref) < 0:
            from cardfit.core.specs.catalog import find_model

            try:
                spec = find_model(ref)
            except Exception:  # noqa: BLE001
                spec = None
            if spec is None or self.table_model.row_of(spec.id) < 0:
                return
            ref = spec.id
        self._pending_select = None
        self.select_model(ref)

    def _request_cells(self, entries: list[ModelEntry], key: str | None = "cells") -> None:
        workloads = self.table_model.workloads()

        def done(cells, workloads=workloads):
            if workloads == self.table_model.workloads():
                self.table_model.set_cells(cells)
                self._update_count()
                self._check_populated()

        self.statusBar().showMessage("Estimating…")
        self.runner.submit(cells_for, entries, workloads, on_result=done, key=key,
                           on_error=lambda e: self.show_message(f"estimates failed: {e}", error=True))

    def _on_context(self, _i: int) -> None:
        ctx = self.context.currentData()
        self.table_model.set_workloads(standard_workloads(context=ctx))
        self._fit_columns()
        self._request_cells(self.table_model.entries())
        self.settings.setValue("table/context", ctx)
        self._restore_selection()

    def _restore_selection(self) -> None:
        if self.current_model_ref:
            self.select_model(self.current_model_ref)

    def select_model(self, ref: str) -> bool:
        row = self.table_model.row_of(ref)
        if row < 0:
            return False
        src = self.table_model.index(row, 0)
        idx = self.proxy.mapFromSource(src)
        if not idx.isValid():  # hidden by the search: show the planner anyway
            self._set_model(self.table_model.entry(row))
            return True
        self.table.setCurrentIndex(idx)
        self.table.selectRow(idx.row())
        self.table.scrollTo(idx)
        if self.current_model_ref != ref:
            self._set_model(self.table_model.entry(row))
        return True

    def _on_current_row(self, current: QModelIndex, _prev: QModelIndex) -> None:
        if not current.isValid():
            return
        ref = current.data(REF_ROLE)
        row = self.table_model.row_of(ref)
        if row >= 0 and ref != self.current_model_ref:
            self._set_model(self.table_model.entry(row))

    def _set_model(self, entry: ModelEntry) -> None:
        self.current_model_ref = entry.ref
        self.current_spec = entry.spec
        self.planner.set_model(entry.spec, entry.params)
        self.settings.setValue("model/last", entry.ref)

    def _on_workload(self, w: Workload) -> None:
        self.current_workload = w
        st.save_workload(self.settings, w)

    def _on_search(self, text: str) -> None:
        self.proxy.set_search(text)
        self.settings.setValue("table/search", text)
        self._update_count()
        if self.proxy.rowCount() and not self.table.currentIndex().isValid():
            self.table.setCurrentIndex(self.proxy.index(0, 0))

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def _focus_table(self) -> None:
        self.table.setFocus(Qt.FocusReason.OtherFocusReason)
        if self.proxy.rowCount():
            cur = self.table.currentIndex()
            if not cur.isValid():
                cur = self.proxy.index(0, 0)
            self.table.setCurrentIndex(cur)
            self.table.selectRow(cur.row())

    def _update_count(self, *_args) -> None:
        n, total = self.proxy.rowCount(), self.table_model.rowCount()
        shown = f"{n} of {total} models" if n != total else f"{total} models"
        card = self.current_card.name if self.current_card else "no card"
        self.count_label.setText(f"{shown} · judged on {card}")
        if self.table_model.has_cells():
            self.statusBar().clearMessage()

    def _update_legend(self) -> None:
        parts = []
        for s in ("fits", "tight", "no"):
            c = theme.status_fill(s).name()
            parts.append(f"<span style='background:{c}; color:{theme.status_text(s).name()}'>"
                         f"&nbsp;{html.escape(theme.STATUS_WORDS[s])}&nbsp;</span>")
        self.legend.setText(" ".join(parts) + " &nbsp;peak GiB per GPU")

    # -- adding models ---------------------------------------------------------------------------

    def add_model(self, ref: str) -> None:
        ref = ref.strip()
        if not ref:
            return
        self.statusBar().showMessage(f"Reading {ref}…")
        self.runner.submit(resolve_entry, ref, on_result=self._added,
                           on_error=lambda e, r=ref: self.show_message(f"Could not add {r}: {e}", error=True))

    def _added(self, entry: ModelEntry) -> None:
        self.table_model.add_entry(entry)
        self._request_cells([entry], key=None)
        if self.search.text() and not self.proxy.mapFromSource(
                self.table_model.index(self.table_model.row_of(entry.ref), 0)).isValid():
            self.search.clear()
        self.select_model(entry.ref)
        self.show_message(f"Added {entry.name} ({entry.ref})")
        st.set_list(self.settings, "models/user",
                    [e.ref for e in self.table_model.entries() if e.origin == "added"])

    def _add_from_input(self) -> None:
        text = self.add_input.text().strip()
        if text:
            self.add_model(text)
            self.add_input.clear()

    def add_model_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add model", "", MODEL_FILTER)
        for p in paths:
            self.add_model(p)

    def add_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add model folder")
        if path:
            self.add_model(path)

    def remove_selected_model(self) -> None:
        ref = self.current_model_ref
        row = self.table_model.row_of(ref) if ref else -1
        if row < 0 or self.table_model.entry(row).origin != "added":
            self.statusBar().showMessage("Only models you added can be removed", 3000)
            return
        self.table_model.remove_ref(ref)
        st.set_list(self.settings, "models/user",
                    [e.ref for e in self.table_model.entries() if e.origin == "added"])
        self.current_model_ref = None
        self.current_spec = None
        if self.proxy.rowCount():
            self.select_model(self.proxy.index(0, 0).data(REF_ROLE))
        else:
            self.planner.set_model(None)

    def show_message(self, text: str, error: bool = False) -> None:
        self.statusBar().clearMessage()
        if error:
            col = theme.status_strong("no", self.palette()).name()
            self.message.setText(f"<span style='color:{col}'>⚠ {html.escape(text)}</span>")
        else:
            self.message.setText(html.escape(text))
        self.message.show()
        self.last_message = text

    last_message = ""

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        for p in paths:
            self.add_model(p)
        if paths:
            event.acceptProposedAction()

    # -- fit test, reports, preferences ----------------------------------------------------------

    def _gpu_index(self) -> int | None:
        c = self.current_card
        if c is not None and c.kind == "detected":
            return c.gpu_index
        if self.machine is not None and self.machine.usable_gpus():
            return self.machine.usable_gpus()[0].index
        return None

    def _ready_for_plan(self, what: str) -> bool:
        if self.current_spec is None or self.current_card is None:
            QMessageBox.information(self, what, "Select a model and a card first.")
            return False
        if self.planner.error:
            QMessageBox.information(self, what, f"Fix the workload first: {self.planner.error}")
            return False
        return True

    def run_fit_test(self) -> None:
        if not self._ready_for_plan("Fit test"):
            return
        try:
            from cardfit.gui.fittest_dialog import FitTestDialog
        except ImportError as exc:
            QMessageBox.information(self, "Fit test", f"The fit test is not available in this build ({exc}).")
            return
        gpu = self._gpu_index()
        if gpu is None:
            QMessageBox.information(
                self, "Fit test", "No NVIDIA GPU detected: the fit test runs the plan on a real card. "
                "The estimates work for any what-if card.")
            return
        dlg = FitTestDialog(self, self.current_model_ref, self.current_spec, self.current_workload,
                            self.current_card, gpu)
        self._keep(dlg)
        dlg.show()

    def _keep(self, dlg: QWidget) -> None:
        self._dialogs = [d for d in self._dialogs if _alive(d)] + [dlg]

    def _last_fit_result(self):
        for d in reversed(self._dialogs):
            if not _alive(d):
                continue
            for name in ("fit_result", "result_obj", "last_result"):
                r = getattr(d, name, None)
                if r is not None and not callable(r):
                    return r
        return None

    def export_report(self) -> None:
        if not self._ready_for_plan("Export report"):
            return
        try:
            from cardfit.core.report.model import build_report
            from cardfit.gui.report_dialog import export_report_dialog
        except ImportError as exc:
            QMessageBox.information(self, "Export report", f"Reports are not available in this build ({exc}).")
            return
        try:
            report = build_report(self.current_spec, self.current_workload, [self.current_card],
                                  self.machine, self._last_fit_result())
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            QMessageBox.warning(self, "Export report", f"Could not build the report: {exc}")
            return
        path = export_report_dialog(self, report)
        if path:
            self.statusBar().showMessage(f"Report saved to {path}", 5000)

    def open_report(self) -> None:
        try:
            import importlib

            report_view = importlib.import_module("cardfit.gui.report_view")
        except ImportError as exc:
            QMessageBox.information(self, "Open report", f"Reports are not available in this build ({exc}).")
            return
        if hasattr(report_view, "open_report_dialog"):
            view = report_view.open_report_dialog(self)  # picks the file, reports errors itself
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Open report", "", "cardfit reports (*.json);;All files (*)")
            if not path:
                return
            try:
                from cardfit.core.report.model import load_report

                view = report_view.ReportView(load_report(path), self)
            except Exception as exc:  # noqa: BLE001 - shown, never a crash
                QMessageBox.warning(self, "Open report", f"Could not open {path}: {exc}")
                return
            view.show()
        if view is not None:
            self._keep(view)

    def preferences(self) -> None:
        from cardfit.gui.preferences import PreferencesDialog

        dlg = PreferencesDialog(self.settings, self)
        if dlg.exec():
            self.monitor.set_interval(st.get_int(self.settings, "hardware/interval_ms", 1000))

    def about(self) -> None:
        QMessageBox.about(
            self, "About cardfit",
            f"<b>cardfit {__version__}</b><br>Which LLMs fit your GPU, and how.<br><br>"
            "Predicts the peak GPU memory of inference and fine-tuning, proves it with a short "
            "run on the card, and exports a report.<br>Apache-2.0.")

    # -- palette ---------------------------------------------------------------------------------

    def changeEvent(self, event) -> None:  # noqa: N802
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.table_model.refresh_colors()
            self._update_legend()
            if self.planner.result is not None:
                self.planner._show_result(self.planner.result)
        super().changeEvent(event)


def _alive(w: QWidget) -> bool:
    try:
        w.isVisible()
        return True
    except RuntimeError:
        return False
