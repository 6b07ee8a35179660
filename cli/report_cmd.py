"""`cardfit report MODEL [workload options] [--card NAME | --vram SIZE] [--with-test RESULT.json]
--out FILE.html|.pdf|.md|.json`: the recommendation report, in the format the suffix names."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cardfit.cli.workload_args import add_card_args, add_workload_args, workload_from_args
from cardfit.core.errors import CardfitError, ReportError, UsageError

FIT_STATUSES = ("fits", "oom", "error", "timeout", "cancelled", "crashed")


def register(sub) -> None:
    p = sub.add_parser("report", help="write a recommendation report (HTML, PDF, Markdown or JSON)",
                       description="Write a report on MODEL under a workload: this machine, the model, the "
                                   "predicted memory breakdown, the verdict and best plans per card, and a "
                                   "fit test's measured curve when --with-test is given. The format follows "
                                   "the suffix of --out. Works without a GPU (pass --card or --vram for a "
                                   "verdict).")
    p.add_argument("model", metavar="MODEL", help="catalog id, config.json, model folder, .gguf file or Hub id")
    add_workload_args(p)
    add_card_args(p)
    p.add_argument("--with-test", metavar="RESULT.json",
                   help="a fit test result (cardfit test --json-out); with the default workload options, "
                        "the test's workload is reported")
    p.add_argument("--machine", metavar="DETECT.json",
                   help="describe the machine from a saved `cardfit detect --json` instead of probing this one")
    p.add_argument("--out", "-o", metavar="FILE", required=True, help="FILE.html, FILE.pdf, FILE.md or FILE.json")
    p.add_argument("--page-size", choices=("A4", "Letter"), default="A4", help="PDF page size (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    p.set_defaults(func=run)


def _read_json(path: str, what: str) -> dict:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{what} {p}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ReportError(f"{what} {p}: not a JSON text file") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ReportError(f"{what} {p}: invalid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{what} {p}: the top level is not a JSON object")
    return doc


def _check_fit_doc(doc: dict, where: str) -> None:
    """The fields of a FitTestResult document (core/fittest/result.py) the report reads."""
    schema = doc.get("schema")
    if not isinstance(schema, str) or not schema.startswith("cardfit.fittest/"):
        raise ReportError(f"{where}: not a fit test result (schema {schema!r}, expected 'cardfit.fittest/1')")
    if doc.get("status") not in FIT_STATUSES:
        raise ReportError(f"{where}: field 'status' is {doc.get('status')!r}, not one of {', '.join(FIT_STATUSES)}")
    for key in ("peak_device_bytes", "predicted_bytes", "device_total_bytes", "available_bytes",
                "peak_rss_bytes", "error_pct", "step_seconds", "tokens_per_second"):
        v = doc.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ReportError(f"{where}: field '{key}' is {v!r}, not a number")
    for key in ("samples", "phases"):
        v = doc.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise ReportError(f"{where}: field '{key}' is not a list of objects")
    for key in ("workload", "model", "gpu", "versions"):
        v = doc.get(key)
        if v is not None and not isinstance(v, dict):
            raise ReportError(f"{where}: field '{key}' is not an object")


def load_fit_result(path: str):
    """A FitTestResult from ``path`` (its ``to_json()`` dict when core/fittest/result.py is not
    installed); ``ReportError`` naming the file and the bad field otherwise."""
    where = f"--with-test {path}"
    doc = _read_json(path, "--with-test")
    _check_fit_doc(doc, where)
    try:
        from cardfit.core.fittest.result import FitTestResult
    except ImportError:
        return doc
    try:
        return FitTestResult.from_json(doc)
    except CardfitError as exc:
        raise ReportError(f"{where}: {exc}") from None
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ReportError(f"{where}: not a valid fit test result ({exc})") from None


def _fit_json(fit) -> dict:
    return fit if isinstance(fit, dict) else fit.to_json()


def cards_for(args, machine, fit) -> list:
    """--card / --vram; else every usable GPU of the machine; else the fit test's GPU."""
    from cardfit.core.hardware.cards import Card, card_from_gpu, resolve_card

    if args.card or args.vram:
        return [resolve_card(args.card, args.vram, gpus=machine.gpus)]
    cards = []
    for g in machine.usable_gpus():
        try:
            cards.append(card_from_gpu(g))
        except UsageError:
            continue
    if cards or fit is None:
        return cards
    d = _fit_json(fit)
    total = d.get("device_total_bytes")
    if isinstance(total, int) and total > 0:
        gpu = d.get("gpu") or {}
        avail = d.get("available_bytes")
        return [Card(name=str(gpu.get("name") or "fit-test GPU"), total_bytes=total,
                     available_bytes=avail if isinstance(avail, int) and avail > 0 else total,
                     kind="detected", gpu_index=gpu.get("index") if isinstance(gpu.get("index"), int) else None)]
    return []


def _check_out(path: str) -> str:
    from cardfit.core.report.render import format_for

    fmt = format_for(path)
    folder = Path(path).parent
    if not folder.is_dir():
        raise ReportError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ReportError(f"cannot write {path}: no permission to write in {folder}")
    return fmt


def run(args) -> int:
    from cardfit.core.estimate.workload import Workload
    from cardfit.core.hardware.machine import MachineInfo, probe_machine
    from cardfit.core.report.model import build_report
    from cardfit.core.report.render import write_report
    from cardfit.core.specs.resolve import resolve_model

    fmt = _check_out(args.out)
    fit = load_fit_result(args.with_test) if args.with_test else None
    if args.machine:
        try:
            machine = MachineInfo.from_json(_read_json(args.machine, "--machine"))
        except ReportError as exc:
            raise ReportError(f"--machine {args.machine}: {exc}") from None
    else:
        machine = probe_machine()
    spec = resolve_model(args.model)
    workload = workload_from_args(args)
    if fit is not None and workload == Workload():
        tested = _fit_json(fit).get("workload")
        if isinstance(tested, dict) and tested:
            try:
                workload = Workload.from_json(tested)
            except UsageError as exc:
                raise ReportError(f"--with-test {args.with_test}: field 'workload': {exc}") from None
    report = build_report(spec, workload, cards_for(args, machine, fit), machine, fit)
    out = write_report(report, args.out, args.page_size)
    size = out.stat().st_size
    if args.json:
        print(json.dumps({"path": str(out), "format": fmt, "bytes": size, "title": report.title}, indent=2))
    else:
        print(f"wrote {out} ({fmt}, {size:,} bytes)")
    return 0
