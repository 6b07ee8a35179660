"""The recommendation report as data: ``build_report`` gathers the machine, the model, the
predicted breakdown, the verdict and best plans per card, and a fit test's measurements;
the renderers (html.py, markdown.py, gui/report_pdf.py) only read a ``Report``.

Every field is plain JSON (numbers in bytes, text as given), so ``Report.to_json()`` is the
whole report and ``Report.from_json`` gives back an equal one: a report reopened in the GUI
shows what was exported. The schema ("cardfit.report/1") is documented in
docs/report-schema.md. Reading is tolerant the way ``MachineInfo.from_json`` is: unknown
keys are ignored (a newer cardfit may add some), missing optional ones take defaults, a
missing required one or a wrong type is a ``ReportError`` naming the field.
"""

from __future__ import annotations

import datetime as _dt
import json
import types
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from cardfit import __version__
from cardfit.core.errors import ReportError

__all__ = ["SCHEMA", "Report", "GpuRow", "MachineSection", "ModelSection", "ComponentRow",
           "Prediction", "PlanRow", "CardSection", "FitTestSection", "build_report", "load_report",
           "MAX_CURVE_SAMPLES"]

SCHEMA = "cardfit.report/1"
# A 10-minute fit test sampled at 20 Hz has 12,000 samples; the report keeps at most this
# many (the highest sample of each time bucket, so the peak always survives).
MAX_CURVE_SAMPLES = 1000


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---- sections ------------------------------------------------------------------------------

@dataclass
class GpuRow:
    index: int
    name: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    compute_capability: str | None = None
    error: str | None = None


@dataclass
class MachineSection:
    time: str = ""  # when the machine was probed (ISO 8601, UTC)
    cardfit_version: str = ""
    os: str | None = None
    cpu: str | None = None
    ram_total_bytes: int | None = None
    ram_available_bytes: int | None = None
    python: str | None = None
    nvml_status: str = ""
    nvml_message: str = ""
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: list[GpuRow] = field(default_factory=list)


@dataclass
class ModelSection:
    id: str
    name: str
    source: str = ""
    architecture: str = ""
    model_type: str = ""
    params: int = 0
    active_params: int | None = None  # MoE: parameters one token passes through
    layers: int | None = None
    hidden_size: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    intermediate_size: int | None = None
    vocab_size: int | None = None
    max_position: int | None = None
    num_experts: int = 0
    experts_per_token: int = 0
    torch_dtype: str | None = None
    confidence: str = "high"
    notes: list[str] = field(default_factory=list)


@dataclass
class ComponentRow:
    key: str
    label: str
    bytes: int
    formula: str = ""
    source: str = ""


@dataclass
class Prediction:
    workload: dict[str, Any]
    label: str
    peak_stage: str
    total_bytes: int
    ram_bytes: int
    confidence: str = "high"
    components: list[ComponentRow] = field(default_factory=list)
    ram_components: list[ComponentRow] = field(default_factory=list)


@dataclass
class PlanRow:
    label: str
    note: str
    total_bytes: int
    ram_bytes: int
    status: str  # "fits" | "tight" | "no"
    fits: bool
    headroom_bytes: int
    quality_rank: int = 0
    workload: dict[str, Any] = field(default_factory=dict)


@dataclass
class CardSection:
    """The requested workload judged on one card, and the best ways to run the model on it."""

    name: str
    kind: str  # "detected" | "catalog" | "custom"
    total_bytes: int
    available_bytes: int
    needed_bytes: int
    fits: bool
    tight: bool
    status: str
    headroom_bytes: int
    ram_fits: bool = True
    gpu_index: int | None = None
    sentence: str = ""  # solver.plan_sentence
    plans: list[PlanRow] = field(default_factory=list)
    best_plan: str | None = None  # label of the first plan that fits
    max_batch: int | None = None  # with the best plan
    max_seq: int | None = None
    seq_kind: str = "sequence"  # "sequence" (training) or "prompt" (inference)


@dataclass
class FitTestSection:
    """A fit test's outcome (core/fittest/result.py FitTestResult) as the report shows it."""

    status: str
    message: str = ""
    phase: str | None = None
    started: str = ""
    gpu_name: str | None = None
    gpu_index: int | None = None
    model_id: str | None = None
    model_name: str | None = None
    workload: dict[str, Any] | None = None
    workload_label: str | None = None
    peak_device_bytes: int | None = None
    predicted_bytes: int | None = None
    error_pct: float | None = None
    device_total_bytes: int | None = None
    available_bytes: int | None = None
    peak_rss_bytes: int | None = None
    peak_allocated_bytes: int | None = None  # torch.cuda.max_memory_allocated, when reported
    peak_reserved_bytes: int | None = None  # torch.cuda.max_memory_reserved, when reported
    step_seconds: float | None = None
    tokens_per_second: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)  # {"phase", "t"}
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"t","phase","device_used",...}
    samples_total: int = 0  # before thinning to MAX_CURVE_SAMPLES


@dataclass
class Report:
    model: ModelSection
    prediction: Prediction
    machine: MachineSection | None = None
    cards: list[CardSection] = field(default_factory=list)
    fit_test: FitTestSection | None = None
    assumptions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings a reader must see
    created: str = field(default_factory=_now)
    cardfit_version: str = __version__
    schema: str = SCHEMA

    @property
    def title(self) -> str:
        return f"{self.model.name}: {self.prediction.label}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        # schema first, for a reader who opens the file
        return {"schema": d.pop("schema"), **d}

    def dumps(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_json(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, doc: dict | str | bytes) -> "Report":
        if isinstance(doc, (str, bytes)):
            try:
                doc = json.loads(doc)
            except ValueError as exc:
                raise ReportError(f"not a cardfit report: invalid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ReportError("not a cardfit report: the top level is not a JSON object")
        schema = doc.get("schema")
        if not isinstance(schema, str) or not schema.startswith("cardfit.report/"):
            raise ReportError(f"not a cardfit report (schema {schema!r}, expected {SCHEMA!r})")
        if schema.split("/", 1)[1] != SCHEMA.split("/", 1)[1]:
            raise ReportError(f"report schema {schema!r} is not supported by this cardfit "
                              f"(it reads {SCHEMA!r}); update cardfit")
        return _load(cls, doc, "report")


def load_report(path: str | Path) -> Report:
    """A report JSON file; ``ReportError`` naming the file when it cannot be read."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReportError(f"{p}: not a cardfit report (not UTF-8 text)") from None
    try:
        return Report.from_json(text)
    except ReportError as exc:
        raise ReportError(f"{p}: {exc}") from None


# ---- JSON reading: dataclasses from dicts, each field checked against its type ------------

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _load(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        last: ReportError | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _load(a, value, where)
            except ReportError as exc:
                last = exc
        raise last or ReportError(f"report field '{where}': unexpected value {value!r}")
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ReportError(f"report field '{where}': expected an object, got {type(value).__name__}")
        hints = get_type_hints(tp)
        kwargs = {}
        for f in fields(tp):
            if f.name not in value:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise ReportError(f"report field '{where}.{f.name}' is missing")
                continue
            kwargs[f.name] = _load(hints[f.name], value[f.name], f"{where}.{f.name}")
        return tp(**kwargs)
    if origin is list:
        if not isinstance(value, list):
            raise ReportError(f"report field '{where}': expected a list, got {type(value).__name__}")
        (item,) = get_args(tp)
        return [_load(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ReportError(f"report field '{where}': expected an object, got {type(value).__name__}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ReportError(f"report field '{where}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReportError(f"report field '{where}': expected a whole number, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReportError(f"report field '{where}': expected a number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ReportError(f"report field '{where}': expected text, got {value!r}")
        return value
    raise ReportError(f"report field '{where}': cannot read a {_type_name(tp)}")


# ---- building --------------------------------------------------------------------------------

def _machine_section(machine) -> MachineSection:
    host = machine.host
    gpus = [GpuRow(index=g.index, name=g.name, memory_total_bytes=g.memory_total_bytes,
                   memory_used_bytes=g.memory_used_bytes, memory_free_bytes=g.memory_free_bytes,
                   driver_version=g.driver_version or machine.driver_version,
                   cuda_driver_version=g.cuda_driver_version or machine.cuda_driver_version,
                   compute_capability=g.compute_capability, error=g.error)
            for g in machine.gpus]
    return MachineSection(time=machine.time, cardfit_version=machine.cardfit_version, os=host.os,
                          cpu=host.cpu_model, ram_total_bytes=host.ram_total_bytes,
                          ram_available_bytes=host.ram_available_bytes, python=host.python,
                          nvml_status=machine.nvml_status, nvml_message=machine.nvml_message,
                          driver_version=machine.driver_version,
                          cuda_driver_version=machine.cuda_driver_version, gpus=gpus)


def _model_section(spec) -> ModelSection:
    pc = spec.param_counts()
    return ModelSection(id=spec.id, name=spec.name, source=spec.source, architecture=spec.architecture,
                        model_type=spec.model_type, params=int(pc.total),
                        active_params=int(pc.active) if spec.is_moe else None,
                        layers=spec.num_layers, hidden_size=spec.hidden_size, heads=spec.num_heads,
                        kv_heads=spec.num_kv_heads, head_dim=spec.head_dim,
                        intermediate_size=spec.intermediate_size, vocab_size=spec.vocab_size,
                        max_position=spec.max_position, num_experts=spec.num_experts,
                        experts_per_token=spec.experts_per_token, torch_dtype=spec.torch_dtype,
                        confidence=spec.confidence, notes=[str(n) for n in spec.notes])


def _rows(components) -> list[ComponentRow]:
    return [ComponentRow(key=c.key, label=c.label, bytes=int(c.bytes), formula=c.formula, source=c.source)
            for c in components]


def _card_section(spec, workload, e, card, ram_available: int | None) -> CardSection:
    from cardfit.core.estimate.result import judge
    from cardfit.core.estimate.solver import best_plans, max_batch, max_seq, plan_sentence

    v = judge(e.total_bytes, card.available_bytes, card.name, e.ram_bytes, ram_available)
    plans = best_plans(spec, card.available_bytes, workload, card.name, ram_available)
    best = next((p for p in plans if p.fits), None)
    sec = CardSection(name=card.name, kind=card.kind, total_bytes=int(card.total_bytes),
                      available_bytes=int(card.available_bytes), needed_bytes=int(v.needed_bytes),
                      fits=v.fits, tight=v.tight, status=v.status, headroom_bytes=int(v.headroom_bytes),
                      ram_fits=v.ram_fits, gpu_index=card.gpu_index, sentence=plan_sentence(plans),
                      plans=[PlanRow(label=p.workload.label(), note=p.note,
                                     total_bytes=int(p.estimate.total_bytes), ram_bytes=int(p.estimate.ram_bytes),
                                     status=p.verdict.status, fits=p.fits,
                                     headroom_bytes=int(p.verdict.headroom_bytes), quality_rank=p.quality_rank,
                                     workload=p.workload.to_json()) for p in plans],
                      seq_kind="sequence" if workload.training else "prompt")
    if best is not None:
        sec.best_plan = best.workload.label()
        sec.max_batch = max_batch(spec, best.workload, card.available_bytes)
        sec.max_seq = max_seq(spec, best.workload, card.available_bytes)
    return sec


def thin_samples(samples: list[dict], limit: int = MAX_CURVE_SAMPLES) -> list[dict]:
    """At most ``limit`` samples, in time order: of each run of consecutive samples the one
    with the most device memory, so the curve keeps its peak and its shape."""
    if len(samples) <= limit:
        return [dict(s) for s in samples]
    out = []
    n = len(samples)
    for i in range(limit):
        chunk = samples[i * n // limit:(i + 1) * n // limit]
        if chunk:
            out.append(dict(max(chunk, key=lambda s: _num(s.get("device_used")) or 0)))
    return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v


def _fit_dict(fit_result: Any) -> dict:
    if isinstance(fit_result, dict):
        return fit_result
    to_json = getattr(fit_result, "to_json", None)
    if callable(to_json):
        return to_json()
    raise ReportError(f"not a fit test result: {type(fit_result).__name__}")


def _fit_section(fit: dict, e, notes: list[str]) -> FitTestSection:
    from cardfit.core.estimate.workload import Workload
    from cardfit.core.units import fmt_bytes

    def opt_int(key: str) -> int | None:
        v = fit.get(key)
        return int(v) if _num(v) is not None else None

    def opt_float(key: str) -> float | None:
        v = fit.get(key)
        return float(v) if _num(v) is not None else None

    model = fit.get("model") or {}
    gpu = fit.get("gpu") or {}
    wl = fit.get("workload") or None
    label = None
    if isinstance(wl, dict) and wl:
        try:
            w = Workload.from_json(wl)
            label = w.label()
            if w != e.workload:
                notes.append(f"The fit test ran another workload ({label}) than the one this report "
                             f"predicts ({e.workload.label()}); its error is against its own prediction.")
        except Exception:  # noqa: BLE001 - a workload from a newer cardfit: show it raw
            label = None
    mid = model.get("id")
    if mid and mid != e.model_id and model.get("name") != e.model_name:
        notes.append(f"The fit test ran model {mid!s}, this report is for {e.model_id}.")
    samples_all = [s for s in (fit.get("samples") or []) if isinstance(s, dict)]
    peak = opt_int("peak_device_bytes")
    predicted = opt_int("predicted_bytes")
    err = opt_float("error_pct")
    if isinstance(wl, dict) and wl == e.workload.to_json() and predicted != int(e.total_bytes):
        # The same workload as this report: measured against this report's prediction, so
        # the report shows one figure; the one recorded at the test (an older cardfit, or
        # another model source) is kept in a note.
        if predicted is not None and peak:
            notes.append(f"When the test ran, cardfit predicted {fmt_bytes(predicted, 2)} "
                         f"(error {(predicted - peak) / peak * 100:+.1f} %); this report's estimate "
                         f"is {fmt_bytes(e.total_bytes, 2)}.")
        predicted, err = int(e.total_bytes), None
    if err is None and peak and predicted is not None:
        # Same definition as FitTestResult.error_pct: (predicted - measured) / measured.
        err = (predicted - peak) / peak * 100.0
    return FitTestSection(
        status=str(fit.get("status") or "unknown"), message=str(fit.get("message") or ""),
        phase=None if fit.get("phase") is None else str(fit.get("phase")),
        started=str(fit.get("started") or ""),
        gpu_name=None if gpu.get("name") is None else str(gpu.get("name")),
        gpu_index=gpu.get("index") if isinstance(gpu.get("index"), int) else None,
        model_id=None if mid is None else str(mid),
        model_name=None if model.get("name") is None else str(model.get("name")),
        workload=dict(wl) if isinstance(wl, dict) else None, workload_label=label,
        peak_device_bytes=peak, predicted_bytes=predicted, error_pct=err,
        device_total_bytes=opt_int("device_total_bytes"), available_bytes=opt_int("available_bytes"),
        peak_rss_bytes=opt_int("peak_rss_bytes"), peak_allocated_bytes=opt_int("peak_allocated_bytes"),
        peak_reserved_bytes=opt_int("peak_reserved_bytes"), step_seconds=opt_float("step_seconds"),
        tokens_per_second=opt_float("tokens_per_second"),
        versions={str(k): v for k, v in (fit.get("versions") or {}).items()},
        phases=[dict(p) for p in (fit.get("phases") or []) if isinstance(p, dict)],
        samples=thin_samples(samples_all), samples_total=len(samples_all))


def build_report(spec, workload, cards: list, machine=None, fit_result=None) -> "Report":
    """The report on ``spec`` running ``workload``: judged on each of ``cards``
    (``core.hardware.cards.Card``), on ``machine`` (``MachineInfo``, or None when unknown),
    with a fit test's outcome (``FitTestResult`` or its ``to_json()`` dict) when given."""
    from cardfit.core.estimate.estimator import estimate

    e = estimate(spec, workload)
    notes: list[str] = []
    cards = [c for c in cards if c is not None]
    ram_available = machine.host.ram_available_bytes if machine is not None else None
    card_secs = []
    for card in cards:
        # Host RAM only binds a card of this machine; a what-if card runs elsewhere.
        ram = ram_available if card.kind == "detected" else None
        card_secs.append(_card_section(spec, workload, e, card, ram))
    fit = _fit_section(_fit_dict(fit_result), e, notes) if fit_result is not None else None
    assumptions = list(e.assumptions)
    assumptions.append(f"estimate confidence: {e.confidence}")
    notes[:0] = [w[:1].upper() + w[1:] + "." for w in e.warnings]
    if not cards:
        notes.append("No card was given and no GPU was detected: pass --card NAME or --vram SIZE "
                     "for a verdict and plans.")
    return Report(model=_model_section(spec),
                  prediction=Prediction(workload=workload.to_json(), label=workload.label(),
                                        peak_stage=e.peak_stage, total_bytes=int(e.total_bytes),
                                        ram_bytes=int(e.ram_bytes), confidence=e.confidence,
                                        components=_rows(e.components), ram_components=_rows(e.ram_components)),
                  machine=_machine_section(machine) if machine is not None else None,
                  cards=card_secs, fit_test=fit, assumptions=assumptions, notes=notes)
