"""`cardfit test MODEL [workload options] [--gpu N | --device cuda:N|cpu] [--steps N]
[--time-limit S] [--python PATH] [--search batch|seq] [--out RESULT.json] [--json] [--stream]`:
builds MODEL with random weights in a child process, runs a few real steps of the workload,
and reports the measured peak memory against the prediction.

Exit codes: 0 fits, 1 does not fit (out of memory; with --search: not even the smallest
value fits), 2 usage error, 3 the test failed (error, time limit, crash), 130 cancelled
(Ctrl-C)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from cardfit.cli.workload_args import add_workload_args, workload_from_args
from cardfit.core.errors import FitTestError, UsageError
from cardfit.core.units import GiB, fmt_bytes

EXIT = {"fits": 0, "oom": 1, "error": 3, "timeout": 3, "crashed": 3, "cancelled": 130}


def register(sub) -> None:
    p = sub.add_parser(
        "test", help="run a short real load/step of the workload and measure its peak memory",
        description="Build MODEL with random weights (nothing is downloaded) in a separate process on "
                    "the GPU, run a few real steps of the workload (training: forward, backward, optimizer "
                    "step; inference: prefill and decode), and compare the measured peak memory with the "
                    "prediction. Exit code 0 fits, 1 out of memory, 2 usage error, 3 failed.")
    p.add_argument("model", metavar="MODEL", help="catalog id, config.json, model folder, .gguf file or Hub id")
    add_workload_args(p)
    g = p.add_argument_group("fit test")
    g.add_argument("--gpu", type=int, default=0, metavar="N", help="CUDA device index (default: 0)")
    g.add_argument("--device", metavar="DEV",
                   help="cuda:N, or cpu to run the same pipeline on the CPU (RSS instead of device memory)")
    g.add_argument("--steps", type=int, default=3, help="measured steps (default: %(default)s)")
    g.add_argument("--warmup", type=int, default=1, help="warm-up steps before them (default: %(default)s)")
    g.add_argument("--time-limit", "--timeout", dest="time_limit", type=float, default=600, metavar="S",
                   help="stop the test after S seconds (default: %(default)s)")
    g.add_argument("--python", metavar="PATH",
                   help="interpreter to run the model under, e.g. your training environment's "
                        "(default: the one running cardfit)")
    g.add_argument("--builder", choices=("auto", "hf", "builtin"), default="auto",
                   help="model code: transformers' class (hf), cardfit's built-in decoder, or hf when "
                        "transformers is importable (auto, the default)")
    g.add_argument("--sample-hz", type=float, default=20, help="memory samples per second (default: %(default)s)")
    g.add_argument("--search", choices=("batch", "seq"),
                   help="find the largest batch (or sequence length; the prompt for inference) that "
                        "fits, by bisection, each probe a fresh run")
    g.add_argument("--search-range", metavar="LO:HI", help="range for --search (default: 1:4096 for batch)")
    g.add_argument("--out", metavar="RESULT.json", help="save the result as JSON (the best probe's with --search)")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object")
    g.add_argument("--stream", action="store_true",
                   help="echo the child's JSON lines on stdout as they come (for scripts); the summary "
                        "follows as one line")
    p.set_defaults(func=run)


def make_request(args, workload):
    """The FitTestRequest the flags describe (a seam for the tests)."""
    from cardfit.core.fittest.launcher import FitTestRequest

    device = args.device
    gpu = args.gpu
    if device and device.startswith("cuda:") and device[5:].isdigit():
        gpu = int(device[5:])
    return FitTestRequest(model=args.model, workload=workload, gpu_index=gpu, device=device,
                          python=args.python, steps=args.steps, warmup=args.warmup,
                          time_limit_s=args.time_limit, sample_hz=args.sample_hz, builder=args.builder)


def run(args) -> int:
    from cardfit.core.specs.resolve import resolve_model

    if args.out:
        folder = Path(args.out).expanduser().resolve().parent
        if not folder.is_dir():
            raise UsageError(f"--out {args.out}: the folder {folder} does not exist")
    workload = workload_from_args(args)
    request = make_request(args, workload)
    # -- issue 10 hook (multi-GPU helper): --gpus N > 1 runs one rank per GPU --
    if workload.gpus > 1:
        from cardfit.cli.fittest_multi import run_multi

        return run_multi(args, request)
    # -- end of issue 10 hook --
    request.check()
    spec = resolve_model(args.model)
    if args.search:
        return _search(args, request, spec)
    from cardfit.core.fittest.launcher import FitTestRun

    run_ = FitTestRun(request, spec)
    result = _drive(run_, args)
    _save(args, result)
    if args.json or args.stream:
        doc = {"type": "summary", "verdict": result.verdict, **result.to_json()}
        print(json.dumps(doc, separators=(",", ":")) if args.stream else json.dumps(doc, indent=1), flush=True)
    else:
        print(render_result(result))
    return EXIT[result.status]


def _save(args, result) -> None:
    if args.out and result is not None:
        try:
            result.save(args.out)
        except FitTestError as exc:
            print(f"cardfit test: {exc}", file=sys.stderr)


class _Progress:
    """One status line on a terminal's stderr: phase, memory now, predicted, capacity."""

    def __init__(self, run_, label: str = ""):
        self.run = run_
        self.label = label
        self.on = sys.stderr.isatty()
        self.last = 0.0
        self.t0 = time.monotonic()
        self.step = ""

    def update(self, ev: dict, force: bool = False) -> None:
        if not self.on:
            return
        if ev.get("type") == "phase" and ev.get("phase") in ("warmup", "step"):
            total = self.run.request.warmup + self.run.request.steps
            self.step = f" {int(ev.get('step', 0)) + 1}/{total}"
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        s = self.run.last_sample or {}
        cuda = self.run.request.cuda
        used = s.get("device_used") if cuda else s.get("rss")
        cap = self.run.available_bytes
        parts = [f"{self.label}{self.run.phase or 'starting'}{self.step if self.run.phase in ('warmup', 'step') else ''}",
                 f"{'used' if cuda else 'RSS'} {fmt_bytes(used) if used is not None else '-'}",
                 f"predicted {fmt_bytes(self.run.prediction_bytes)}"]
        if cap:
            parts.append(f"{'available' if cuda else 'RAM available'} {fmt_bytes(cap)}")
        parts.append(f"{now - self.t0:.0f} s")
        sys.stderr.write("\r\x1b[K" + "  |  ".join(parts))
        sys.stderr.flush()

    def clear(self) -> None:
        if self.on:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _drive(run_, args, label: str = ""):
    """Runs to the end, echoing (--stream) and showing progress; Ctrl-C cancels the child
    (a second Ctrl-C kills it at once) and still returns its result."""
    progress = _Progress(run_, label)
    interrupts = 0
    run_.start()
    events = run_.events()
    while True:
        try:
            for ev in events:
                if ev["type"] == "end":
                    progress.clear()
                    return ev["result"]
                if args.stream:
                    print(json.dumps(ev, separators=(",", ":"), default=str), flush=True)
                progress.update(ev)
            progress.clear()
            return run_.wait()
        except KeyboardInterrupt:
            interrupts += 1
            progress.clear()
            print("cardfit test: stopping the fit test" + (" now" if interrupts > 1 else
                  " (Ctrl-C again to kill it)"), file=sys.stderr)
            run_.cancel(kill=interrupts > 1)
            events = run_.events()  # the interrupted generator is closed; read on


def render_result(r) -> str:
    model = r.model or {}
    params = model.get("params")
    size = ""
    if params:
        size = f"  ({params / 1e9:.2f}B params)" if params >= 1e8 else f"  ({params / 1e6:.2f}M params)"
    lines = [f"Fit test: {model.get('name') or model.get('id')}{size}"]
    try:
        from cardfit.core.estimate.workload import Workload

        lines.append(f"Workload: {Workload.from_json(r.workload).label()}")
    except Exception:
        pass
    v = r.versions or {}
    dev = r.device or "?"
    if r.gpu.get("name") and r.gpu.get("name") != "CPU":
        dev += f" {r.gpu['name']}"
    libs = ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "peft", "bitsandbytes") if v.get(k))
    lines.append(f"Device:   {dev}" + (f"  ({libs}" + (f"; builder {r.builder})" if r.builder else ")") if libs else ""))
    lines.append("")
    cpu = r.peak_device_bytes is None and (r.device == "cpu")

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<28}{value}")

    def gib(n) -> str:
        return f"{n / GiB:8.2f} GiB" if n is not None else "       -"

    if cpu:
        row("Measured peak (RSS, CPU)", gib(r.peak_rss_bytes))
    else:
        row("Measured peak (device)", gib(r.peak_device_bytes))
        if r.peak_reserved_bytes is not None:
            row("  torch reserved / allocated", f"{gib(r.peak_reserved_bytes)} / {gib(r.peak_allocated_bytes).strip()}")
    err = f"   (error {r.error_pct:+.1f} %)" if r.error_pct is not None else (
        "   (GPU prediction; not comparable with RSS)" if cpu else "")
    row("Predicted", gib(r.predicted_bytes) + err)
    if r.available_bytes is not None:
        row("Available / capacity" if not cpu else "Host RAM available / total",
            f"{gib(r.available_bytes)} / {gib(r.device_total_bytes).strip()}")
    if r.headroom_bytes is not None and r.status == "fits":
        row("Headroom", gib(r.headroom_bytes))
    if not cpu and r.peak_rss_bytes is not None:
        row("Peak host RAM (RSS)", gib(r.peak_rss_bytes))
    if r.step_seconds is not None:
        row("Time per step", f"{r.step_seconds:8.3f} s")
    if r.tokens_per_second is not None:
        row("Tokens / s", f"{r.tokens_per_second:8.1f}")
    lines.append("")
    msg = r.message
    if msg.lower().startswith(r.verdict + ":"):
        msg = msg[len(r.verdict) + 1:].strip()
    lines.append(f"Verdict: {r.verdict.upper()} - {msg}")
    return "\n".join(lines)


def _parse_range(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    try:
        lo, hi = text.split(":")
        return (int(lo) if lo else None), (int(hi) if hi else None)
    except ValueError:
        raise UsageError(f"--search-range {text!r}: use LO:HI, e.g. 1:64") from None


def _search(args, request, spec) -> int:
    from cardfit.core.fittest.launcher import FitTestRun, search_field, search_max

    lo, hi = _parse_range(args.search_range)
    name = search_field(request.workload, args.search)
    quiet = args.json and not args.stream

    def runner(req, spec_):
        value = getattr(req.workload, name)
        return _drive(FitTestRun(req, spec_), args, label=f"{name} {value}: ")

    def on_probe(p) -> None:
        r = p.result
        if args.stream:
            print(json.dumps({"type": "probe", **p.to_json()}, separators=(",", ":")), flush=True)
        elif not quiet:
            peak = r.peak_device_bytes if r.peak_device_bytes is not None else r.peak_rss_bytes
            print(f"  {name} {p.value:>6}: {r.verdict:<13} peak {fmt_bytes(peak) if peak else '-':>10}  "
                  f"predicted {fmt_bytes(r.predicted_bytes) if r.predicted_bytes else '-'}", flush=True)

    if not quiet and not args.stream:
        print(f"Searching the largest {name} that fits ({spec.name}, {request.resolved_device})")
    sr = search_max(request, args.search, lo, hi, on_probe, spec=spec, runner=runner)
    best = sr.best_result
    _save(args, best)
    if args.json or args.stream:
        doc = {"type": "search", **sr.to_json()}
        print(json.dumps(doc, separators=(",", ":")) if args.stream else json.dumps(doc, indent=1), flush=True)
    else:
        print(sr.message[0].upper() + sr.message[1:])
    return {"done": 0, "none-fits": 1, "cancelled": 130}.get(sr.status, 3)
