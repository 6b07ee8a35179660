"""The planner for the selected model: the workload form, the estimate as a stacked bar
against the card's free memory, the largest batch and sequence that fit, and the ranked
alternative plans (``plan_sentence`` first). A workload the form cannot express is shown
as an inline message under the form (the ``UsageError``'s own words), never a crash.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QGridLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QPushButton, QSizePolicy, QSpinBox,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from cardfit.core.errors import CardfitError
from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.result import Estimate, Plan, judge
from cardfit.core.estimate.solver import best_plans, max_batch, max_seq, plan_sentence
from cardfit.core.estimate.workload import ATTNS, AMPS, DTYPES, OFFLOADS, OPTIMS, Workload
from cardfit.core.hardware.cards import Card
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.core.units import fmt_bytes
from cardfit.gui import theme
from cardfit.gui.breakdown_bar import BreakdownBar
from cardfit.gui.model_table import fmt_params
from cardfit.gui.workers import TaskRunner

TASK_NAMES = [("infer", "Inference"), ("lora", "LoRA"), ("qlora", "QLoRA"),
              ("full", "Full fine-tune"), ("galore", "GaLore")]
SHARDING = [("none", "none (one GPU or plain DDP)", 0, None), ("zero1", "ZeRO-1", 1, None),
            ("zero2", "ZeRO-2", 2, None), ("zero3", "ZeRO-3", 3, None),
            ("fsdp-full", "FSDP full shard", 0, "full"), ("fsdp-grad-op", "FSDP grad-op", 0, "grad-op")]
KV_DTYPES = [(None, "as compute"), ("fp16", "fp16"), ("bf16", "bf16"), ("fp8", "fp8"),
             ("int8", "int8"), ("int4", "int4"), ("fp32", "fp32")]


def _combo(items, name: str) -> QComboBox:
    c = QComboBox()
    for data, text in items:
        c.addItem(text, data)
    c.setAccessibleName(name)
    return c


def _spin(lo: int, hi: int, name: str, step: int = 1) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setAccessibleName(name)
    s.setKeyboardTracking(False)  # recompute when the user stops typing (Enter / focus out)
    s.setGroupSeparatorShown(True)
    return s


def _set_data(c: QComboBox, value) -> None:
    i = c.findData(value)
    if i >= 0:
        c.setCurrentIndex(i)


class WorkloadForm(QWidget):
    """Edits a ``Workload``; ``changed`` after every edit. The GPU count comes from the card
    picker (``workload(gpus)``)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        g = QGridLayout(self)
        g.setContentsMargins(0, 0, 0, 0)
        g.setHorizontalSpacing(8)
        g.setVerticalSpacing(4)
        self.task = _combo(TASK_NAMES, "Task")
        self.dtype = _combo([(d, d) for d in DTYPES], "Weight dtype")
        self.amp = _combo([(a, a) for a in AMPS], "Autocast")
        self.optim = _combo([(o, o) for o in OPTIMS], "Optimizer")
        self.batch = _spin(1, 4096, "Batch size")
        self.seq = _spin(16, 1 << 21, "Sequence length", 256)
        self.prompt = _spin(1, 1 << 21, "Prompt tokens", 256)
        self.new = _spin(0, 1 << 20, "New tokens", 64)
        self.kv = _combo(KV_DTYPES, "KV cache dtype")
        self.attn = _combo([(a, a) for a in ATTNS], "Attention")
        self.ckpt = QCheckBox("&Gradient checkpointing")
        self.lora_r = _spin(1, 1024, "LoRA rank", 8)
        self.lora_targets = _combo([("qv", "q, v"), ("qkvo", "q, k, v, o"), ("all", "all linears")],
                                   "LoRA targets")
        self.galore_rank = _spin(1, 4096, "GaLore rank", 32)
        self.sharding = _combo([(k, t) for k, t, _, _ in SHARDING], "Sharding")
        self.offload = _combo([(o, o) for o in OFFLOADS], "Offload")
        self._rows: dict[str, tuple[QLabel | None, QWidget]] = {}
        layout = [
            ("task", "&Task", self.task), ("dtype", "&Weights", self.dtype),
            ("amp", "&Autocast", self.amp), ("optim", "&Optimizer", self.optim),
            ("batch", "&Batch", self.batch), ("seq", "&Sequence", self.seq),
            ("prompt", "&Prompt", self.prompt), ("new", "&New tokens", self.new),
            ("kv", "&KV cache", self.kv), ("attn", "Atte&ntion", self.attn),
            ("lora_r", "LoRA &rank", self.lora_r), ("lora_targets", "LoRA ta&rgets", self.lora_targets),
            ("galore_rank", "GaLore ran&k", self.galore_rank), ("sharding", "S&harding", self.sharding),
            ("offload", "O&ffload", self.offload),
        ]
        self._grid = g
        self._order = [key for key, _, _ in layout]
        for key, text, w in layout:
            lab = QLabel(text)
            lab.setBuddy(w)
            self._rows[key] = (lab, w)
        self._rows["ckpt"] = (None, self.ckpt)
        g.setColumnStretch(1, 1)
        g.setColumnStretch(3, 1)
        self.set_workload(Workload())
        for c in (self.task, self.dtype, self.amp, self.optim, self.kv, self.attn, self.lora_targets,
                  self.sharding, self.offload):
            c.currentIndexChanged.connect(self._edited)
        for s in (self.batch, self.seq, self.prompt, self.new, self.lora_r, self.galore_rank):
            s.valueChanged.connect(self._edited)
        self.ckpt.toggled.connect(self._edited)

    def _edited(self, *_args) -> None:
        self._update_visibility()
        self.changed.emit()

    def _show(self, key: str, on: bool) -> None:
        lab, w = self._rows[key]
        w.setVisible(on)
        if lab is not None:
            lab.setVisible(on)

    def _update_visibility(self) -> None:
        task = self.task.currentData()
        train = task != "infer"
        shown = {key: True for key in self._rows}
        for key in ("optim", "seq", "ckpt", "sharding"):
            shown[key] = train
        for key in ("prompt", "new", "kv"):
            shown[key] = not train
        shown["amp"] = task == "full"
        shown["lora_r"] = shown["lora_targets"] = task in ("lora", "qlora")
        shown["galore_rank"] = task == "galore"
        # Visible fields fill the two columns in order, without holes.
        g = self._grid
        for key, (lab, w) in self._rows.items():
            for x in (lab, w):
                if x is not None:
                    g.removeWidget(x)
        i = 0
        for key in self._order:
            lab, w = self._rows[key]
            if shown[key]:
                r, c = divmod(i, 2)
                g.addWidget(lab, r, 2 * c)
                g.addWidget(w, r, 2 * c + 1)
                i += 1
            self._show(key, shown[key])
        g.addWidget(self.ckpt, (i + 1) // 2, 0, 1, 4)
        self._show("ckpt", shown["ckpt"])

    def workload(self, gpus: int = 1) -> Workload:
        """The form's workload; ``UsageError`` (the Workload's own message) when invalid."""
        task = self.task.currentData()
        shard = next(s for s in SHARDING if s[0] == self.sharding.currentData())
        train = task != "infer"
        return Workload(
            task=task, dtype=self.dtype.currentData(), amp=self.amp.currentData() if task == "full" else "none",
            optim=self.optim.currentData(), batch=self.batch.value(), seq=self.seq.value(),
            prompt=self.prompt.value(), new=self.new.value(),
            kv_dtype=None if train else self.kv.currentData(), grad_ckpt=train and self.ckpt.isChecked(),
            attn=self.attn.currentData(), lora_r=self.lora_r.value(),
            lora_targets=self.lora_targets.currentData(), galore_rank=self.galore_rank.value(),
            gpus=gpus, zero=shard[2] if train else 0, fsdp=shard[3] if train else None,
            offload=self.offload.currentData())

    def set_workload(self, w: Workload) -> None:
        widgets = [self.task, self.dtype, self.amp, self.optim, self.kv, self.attn, self.lora_targets,
                   self.sharding, self.offload, self.batch, self.seq, self.prompt, self.new,
                   self.lora_r, self.galore_rank, self.ckpt]
        for x in widgets:
            x.blockSignals(True)
        try:
            _set_data(self.task, w.task)
            _set_data(self.dtype, w.dtype)
            _set_data(self.amp, w.amp)
            _set_data(self.optim, w.optim)
            _set_data(self.kv, w.kv_dtype)
            _set_data(self.attn, w.attn)
            _set_data(self.lora_targets, w.lora_targets)
            _set_data(self.offload, w.offload)
            shard = "none"
            if w.fsdp:
                shard = f"fsdp-{w.fsdp}"
            elif w.zero:
                shard = f"zero{w.zero}"
            _set_data(self.sharding, shard)
            self.batch.setValue(w.batch)
            self.seq.setValue(w.seq)
            self.prompt.setValue(w.prompt)
            self.new.setValue(w.new)
            self.lora_r.setValue(w.lora_r)
            self.galore_rank.setValue(w.galore_rank)
            self.ckpt.setChecked(w.grad_ckpt)
        finally:
            for x in widgets:
                x.blockSignals(False)
        self._update_visibility()


@dataclass(frozen=True)
class PlanResult:
    """What the planner shows, computed off the UI thread."""

    estimate: Estimate
    plans: list[Plan]
    sentence: str
    max_batch: int
    max_seq: int
    available: int
    card_name: str
    ram_available: int | None


def compute_plan(spec: ModelSpec, w: Workload, available: int, card_name: str,
                 ram_available: int | None) -> PlanResult:
    e = estimate(spec, w)
    # The alternatives keep the batch and lengths of ``w``.
    try:
        plans = best_plans(spec, available, w, card_name, ram_available)
        sentence = plan_sentence(plans)
    except CardfitError as exc:
        plans, sentence = [], f"no alternative plans: {exc}"
    try:
        mb = max_batch(spec, w, available)
    except CardfitError:
        mb = -1  # the search itself failed: shown as unknown
    try:
        ms = max_seq(spec, w, available)
    except CardfitError:
        ms = -1  # e.g. a config's max_position beyond what a Workload accepts
    return PlanResult(e, plans, sentence, mb, ms, available, card_name, ram_available)


class PlannerPanel(QWidget):
    """Planner for one model on one card; ``workload_changed`` when the form yields a new
    valid workload."""

    workload_changed = Signal(object)
    result_ready = Signal(object)
    fit_test_requested = Signal()
    export_requested = Signal()

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self._runner = runner
        self.spec: ModelSpec | None = None
        self.card: Card | None = None
        self.gpus = 1
        self.ram_available: int | None = None
        self.workload: Workload | None = None
        self.result: PlanResult | None = None
        self.error: str | None = None

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 0, 0, 0)
        self.title = QLabel("Select a model")
        f = self.title.font()
        f.setPointSizeF(f.pointSizeF() * 1.25)
        f.setBold(True)
        self.title.setFont(f)
        self.subtitle = QLabel("")
        self.subtitle.setWordWrap(True)
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.title)
        outer.addWidget(self.subtitle)

        box = QGroupBox("Workload")
        bl = QVBoxLayout(box)
        self.form = WorkloadForm()
        bl.addWidget(self.form)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setAccessibleName("Workload error")
        self.error_label.hide()
        bl.addWidget(self.error_label)
        outer.addWidget(box)

        res = QGroupBox("Estimate")
        rl = QVBoxLayout(res)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.verdict.setTextFormat(Qt.TextFormat.RichText)
        self.bar = BreakdownBar()
        self.limits = QLabel("")
        self.limits.setWordWrap(True)
        self.ram = QLabel("")
        self.ram.setWordWrap(True)
        for w in (self.verdict, self.bar, self.limits, self.ram):
            rl.addWidget(w)
        outer.addWidget(res)

        plans = QGroupBox("Plans for this card")
        pl = QVBoxLayout(plans)
        self.sentence = QLabel("")
        self.sentence.setWordWrap(True)
        sf = self.sentence.font()
        sf.setBold(True)
        self.sentence.setFont(sf)
        self.plans = QTreeWidget()
        self.plans.setRootIsDecorated(False)
        self.plans.setHeaderLabels(["Plan", "Needs", "Verdict"])
        self.plans.setAlternatingRowColors(False)
        self.plans.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.plans.setAccessibleName("Ranked plans")
        self.plans.setToolTip("Double-click (or Enter) to use a plan")
        self.plans.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in (1, 2):
            self.plans.header().setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.plans.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.plans.itemActivated.connect(self._use_plan)
        pl.addWidget(self.sentence)
        pl.addWidget(self.plans)
        outer.addWidget(plans, 1)

        buttons = QHBoxLayout()
        self.fit_button = QPushButton("Run &fit test…")
        self.fit_button.setToolTip("Run this plan for a few steps on the GPU and measure its peak (Ctrl+T)")
        self.export_button = QPushButton("&Export report…")
        self.export_button.setToolTip("Save this plan, its breakdown and the hardware as a report (Ctrl+E)")
        self.fit_button.clicked.connect(self.fit_test_requested)
        self.export_button.clicked.connect(self.export_requested)
        buttons.addStretch(1)
        buttons.addWidget(self.fit_button)
        buttons.addWidget(self.export_button)
        outer.addLayout(buttons)

        self.form.changed.connect(self.recompute)
        self._set_enabled()

    # -- inputs ----------------------------------------------------------------------------------

    def set_model(self, spec: ModelSpec | None, params: int | None = None) -> None:
        self.spec = spec
        if spec is None:
            self.title.setText("Select a model")
            self.subtitle.setText("")
        else:
            n = params if params is not None else spec.param_counts().total
            self.title.setText(spec.name)
            moe = f", MoE {spec.experts_per_token} of {spec.num_experts} experts" if spec.is_moe else ""
            self.subtitle.setText(f"{spec.id} · {fmt_params(n)} parameters · {spec.num_layers} layers, "
                                  f"hidden {spec.hidden_size}{moe} · context {spec.max_position:,}")
            self.subtitle.setToolTip(spec.source)
        self.recompute()

    def set_card(self, card: Card | None, gpus: int | None = None, ram_available: int | None = None) -> None:
        self.card = card
        if gpus is not None:
            self.gpus = gpus
        self.ram_available = ram_available
        self.recompute()

    def set_gpus(self, gpus: int) -> None:
        self.gpus = gpus
        self.recompute()

    def set_workload(self, w: Workload) -> None:
        self.form.set_workload(w)
        self.recompute()

    # -- computing -------------------------------------------------------------------------------

    def recompute(self) -> None:
        try:
            w = self.form.workload(self.gpus)
        except CardfitError as exc:
            self._show_error(str(exc))
            return
        self._show_error(None)
        if w != self.workload:
            self.workload = w
            self.workload_changed.emit(w)
        if self.spec is None or self.card is None:
            self.result = None
            self._show_result(None)
            return
        self.busy = True
        self._runner.submit(compute_plan, self.spec, w, self.card.available_bytes, self.card.name,
                            self.ram_available, on_result=self._done, on_error=self._failed, key="plan")

    busy = False

    def _done(self, r: PlanResult) -> None:
        self.busy = False
        self.result = r
        self._show_result(r)
        self.result_ready.emit(r)

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.result = None
        self._show_result(None)
        self._show_error(str(exc) if isinstance(exc, CardfitError) else f"could not estimate: {exc}")

    def _show_error(self, text: str | None) -> None:
        self.error = text
        if text:
            col = theme.status_strong("no", self.palette()).name()
            self.error_label.setText(f"<span style='color:{col}'>⚠ {text}</span>")
            self.error_label.show()
        else:
            self.error_label.hide()
        self._set_enabled()

    def _set_enabled(self) -> None:
        ok = self.error is None and self.spec is not None and self.card is not None
        self.fit_button.setEnabled(ok)
        self.export_button.setEnabled(ok)

    def _show_result(self, r: PlanResult | None) -> None:
        self._set_enabled()
        if r is None:
            self.verdict.setText("")
            self.bar.set_estimate(None, None)
            self.limits.setText("")
            self.ram.setText("")
            self.sentence.setText("")
            self.plans.clear()
            return
        e = r.estimate
        v = judge(e.total_bytes, r.available, r.card_name)
        col = theme.status_strong(v.status, self.palette()).name()
        if v.fits:
            word = "fits" if not v.tight else "fits, but tight"
            tail = f"{fmt_bytes(v.headroom_bytes)} to spare"
        else:
            word, tail = "does not fit", f"{fmt_bytes(-v.headroom_bytes)} short"
        per = " per GPU" if self.gpus > 1 else ""
        self.verdict.setText(
            f"Needs <b>{fmt_bytes(e.total_bytes)}</b>{per} of {fmt_bytes(r.available)} free on "
            f"{r.card_name}: <b style='color:{col}'>{word}</b>, {tail} "
            f"<span>(peak at the {e.peak_stage})</span>"
            + "".join(f"<br><b style='color:{theme.status_strong('no', self.palette()).name()}'>"
                      f"{html.escape(x[:1].upper() + x[1:])}</b>" for x in e.warnings))
        self.bar.set_estimate(e, r.available, r.card_name)
        what = "sequence" if e.workload.training else "prompt"
        if r.max_batch > 0:
            mb = f"largest batch that fits: <b>{r.max_batch:,}</b>"
        else:
            mb = "not even batch 1 fits" if r.max_batch == 0 else "largest batch: could not be searched"
        if r.max_seq > 0:
            ms = f"longest {what} at batch {e.workload.batch}: <b>{r.max_seq:,}</b> tokens"
        elif r.max_seq == 0:
            ms = f"no {what} of 128 tokens or more fits at batch {e.workload.batch}"
        else:
            ms = f"longest {what}: could not be searched"
        self.limits.setText(f"{mb.capitalize()} · {ms}")
        if r.ram_available is not None:
            ram_ok = e.ram_bytes <= r.ram_available
            self.ram.setText(f"Host RAM: needs {fmt_bytes(e.ram_bytes)} of {fmt_bytes(r.ram_available)} available"
                             + ("" if ram_ok else " — not enough RAM"))
        else:
            self.ram.setText(f"Host RAM: needs {fmt_bytes(e.ram_bytes)}")
        self.sentence.setText(r.sentence[:1].upper() + r.sentence[1:])
        self.plans.clear()
        for p in r.plans:
            st = p.verdict.status
            verdict = (f"fits, {fmt_bytes(p.verdict.headroom_bytes)} spare" if p.fits
                       else f"{fmt_bytes(-p.verdict.headroom_bytes)} short")
            if st == "tight":
                verdict = "tight, " + verdict.split(", ", 1)[1]
            item = QTreeWidgetItem([p.note or p.workload.label(), fmt_bytes(p.estimate.total_bytes), verdict])
            item.setData(0, Qt.ItemDataRole.UserRole, p.workload)
            item.setForeground(2, theme.status_strong(st, self.palette()))
            tip = f"{p.workload.label()}\n(double-click or Enter: use this plan)"
            for c in range(3):
                item.setToolTip(c, tip)
            if p.workload == e.workload.with_(gpus=p.workload.gpus):
                f = item.font(0)
                f.setBold(True)
                for c in range(3):
                    item.setFont(c, f)
            self.plans.addTopLevelItem(item)

    def _use_plan(self, item: QTreeWidgetItem, _col: int = 0) -> None:
        w = item.data(0, Qt.ItemDataRole.UserRole)
        if isinstance(w, Workload):
            self.set_workload(w)

    def plan_labels(self) -> list[str]:
        return [self.plans.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole).label()
                for i in range(self.plans.topLevelItemCount())]
