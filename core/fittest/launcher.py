"""The fit test's parent side: starts ``core/fittest/child.py`` in a fresh process (its own
session, so a Ctrl-C in the terminal or a crash in the child touches only the child),
feeds it the spec on stdin, reads its JSON lines on a thread, enforces the time limit,
cancels on request (SIGTERM = clean stop, SIGKILL after a grace period), always reaps the
process, and turns every ending into one ``FitTestResult``.

The child runs under any Python interpreter with torch (``--python``, the GUI's
preference): the user's own training environment. It never imports cardfit.

``search_max`` finds the largest batch (or sequence length) that really fits by bisection,
each probe a fresh child process.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from cardfit.core.errors import FitTestError, UsageError
from cardfit.core.estimate.workload import Workload
from cardfit.core.fittest.result import FitTestResult
from cardfit.core.units import fmt_bytes

CHILD = Path(__file__).resolve().with_name("child.py")
GRACE_S = 5.0  # SIGTERM -> SIGKILL
MAX_LINE_BYTES = 1 << 20  # a longer stdout line is garbage, read and dropped in pieces
STDERR_LINES = 40  # kept for the message of a crash
BUILDERS = ("auto", "hf", "builtin")

# Exit codes of child.py (see Run.main there).
_CHILD_CODES = {0: "ok", 3: "oom", 4: "error", 5: "stopped"}


# ---- the interpreter --------------------------------------------------------------------

_PY_CHECK = ("import sys, importlib.util as u; "
             "sys.exit(3 if sys.version_info < (3, 8) else (0 if u.find_spec('torch') else 4))")
_checked: dict[tuple, str] = {}


def resolve_python(python: str | None) -> str:
    """The interpreter the child runs under: ``python`` (a path or a name on PATH), else
    this process's own. Checks that it exists, runs, and can import torch; a
    ``FitTestError`` says what is wrong and how to fix it. In a frozen bundle (which has no
    torch) an interpreter must be named."""
    if not python:
        if getattr(sys, "frozen", False):
            raise FitTestError(
                "the fit test runs a model under a Python interpreter with PyTorch, and this "
                "cardfit bundle has none: pass --python /path/to/python (your training "
                "environment's, e.g. ~/venv/bin/python) or set it in the app under "
                "Tools > Preferences > Fit-test interpreter")
        python = sys.executable
        if not python:
            raise FitTestError("cannot tell which Python runs cardfit: pass --python PATH")
    path = python
    if os.sep not in python and not (os.altsep and os.altsep in python):
        found = shutil.which(python)
        if not found:
            raise FitTestError(f"--python {python}: no such interpreter on PATH")
        path = found
    p = Path(path).expanduser()
    if not p.exists():
        raise FitTestError(f"--python {python}: {p} does not exist")
    if p.is_dir():
        raise FitTestError(f"--python {python}: {p} is a folder; give the interpreter itself "
                           f"(e.g. {p / 'bin' / 'python'})")
    if not os.access(p, os.X_OK):
        raise FitTestError(f"--python {python}: {p} is not executable")
    try:
        st = p.stat()
        key = (str(p), st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise FitTestError(f"--python {python}: {exc.strerror or exc}") from None
    if key in _checked:
        return _checked[key]
    try:
        proc = subprocess.run([str(p), "-c", _PY_CHECK], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FitTestError(f"--python {python}: cannot run it ({exc})") from None
    if proc.returncode == 3:
        raise FitTestError(f"--python {python}: the fit test needs Python 3.8 or newer")
    if proc.returncode == 4:
        raise FitTestError(f"--python {python}: this interpreter cannot import torch; install "
                           f"PyTorch there ({p} -m pip install torch) or pick the interpreter "
                           "of your training environment")
    if proc.returncode != 0:
        last = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise FitTestError(f"--python {python}: it does not run as a Python interpreter "
                           f"(exit code {proc.returncode}: {last[0][:200]})")
    _checked[key] = str(p)
    return str(p)


# ---- the request ------------------------------------------------------------------------

@dataclass
class FitTestRequest:
    model: str  # as the user named it (catalog id, path, Hub id)
    workload: Workload
    gpu_index: int = 0
    device: str | None = None  # None -> f"cuda:{gpu_index}"; "cpu" runs the same pipeline on the CPU
    python: str | None = None  # None -> this interpreter
    steps: int = 3
    warmup: int = 1
    time_limit_s: float = 600
    sample_hz: float = 20
    builder: str = "auto"  # "auto" (transformers when importable), "hf", "builtin"
    seed: int = 0
    fault: str | None = None  # TEST-ONLY: injected by child.py (hang, hang-hard, segfault, exit, garbage, oom, error)

    @property
    def resolved_device(self) -> str:
        dev = self.device or f"cuda:{self.gpu_index}"
        if dev == "cuda":
            dev = "cuda:0"
        return dev

    @property
    def cuda(self) -> bool:
        return self.resolved_device.startswith("cuda")

    def check(self) -> None:
        """``UsageError`` naming the first bad field."""
        dev = self.resolved_device
        if dev != "cpu" and not (dev.startswith("cuda:") and dev[5:].isdigit()):
            raise UsageError(f"--device {dev!r}: use cuda:N or cpu")
        for name, lo in (("steps", 1), ("warmup", 0), ("gpu_index", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > 10_000:
                raise UsageError(f"--{name.replace('_index', '').replace('_', '-')} must be a whole "
                                 f"number from {lo} to 10000, not {v!r}")
        if not (isinstance(self.time_limit_s, (int, float)) and 0 < self.time_limit_s <= 7 * 86400):
            raise UsageError(f"--time-limit must be a number of seconds above 0, not {self.time_limit_s!r}")
        if not (isinstance(self.sample_hz, (int, float)) and 1 <= self.sample_hz <= 200):
            raise UsageError(f"--sample-hz must be from 1 to 200, not {self.sample_hz!r}")
        if self.builder not in BUILDERS:
            raise UsageError(f"--builder {self.builder!r} is not one of {', '.join(BUILDERS)}")
        check_workload(self.workload)

    def child_spec(self, spec) -> dict:
        """The JSON spec child.py reads: the config the model spec was built from, and the workload."""
        if not isinstance(spec.config, dict) or not spec.config:
            raise FitTestError(f"{spec.id}: its model spec has no config to build the model from")
        from cardfit.core.estimate.estimator import position_limit

        too_long = position_limit(spec, self.workload)
        if too_long:
            raise FitTestError(too_long[:1].upper() + too_long[1:])
        out = {"config": spec.config, "workload": self.workload.to_json(), "device": self.resolved_device,
               "steps": self.steps, "warmup": self.warmup, "sample_hz": self.sample_hz,
               "builder": self.builder, "seed": self.seed}
        if self.fault:
            out["fault"] = self.fault
        return out


def check_workload(w: Workload) -> None:
    """The workloads one fit-test process can run for real (``FitTestError`` otherwise)."""
    if w.gpus > 1 or w.zero or w.fsdp:
        raise FitTestError("the fit test runs on one GPU; test the per-GPU workload with --gpus 1 "
                           "(ZeRO / FSDP sharding is estimated, not tested)")
    if w.offload != "none":
        raise FitTestError("--offload is estimated only; the fit test does not run CPU offload")
    if w.dtype in ("gptq", "awq", "gguf"):
        raise FitTestError(f"the fit test cannot make {w.dtype} weights with random values; test "
                           "--dtype nf4 (4-bit) or int8 instead, which are close in size")


# ---- one run ----------------------------------------------------------------------------

def _num(v: Any) -> int | float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _State:
    """What the reader thread gathered from the child's stream."""

    def __init__(self):
        self.hello: dict = {}
        self.versions: dict = {}
        self.built: dict = {}
        self.samples: list[dict] = []
        self.phases: list[dict] = []
        self.marks: list[dict] = []
        self.steps: list[dict] = []
        self.oom: dict | None = None
        self.error: dict | None = None
        self.stopped: dict | None = None
        self.result: dict | None = None
        self.phase: str | None = None
        self.garbage = 0
        self.baseline: int | None = None
        self.peak_own = 0
        self.peak_rss = 0
        self.last_sample: dict | None = None


def host_memory() -> tuple[int | None, int | None]:
    """Host RAM (total, available) in bytes: what a CPU run is judged against."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except Exception:  # noqa: BLE001 -- no psutil, or it failed: unknown, not fatal
        return None, None


class _ResultStream:
    """What a one-process and a several-process fit test share: the queue of events that
    ends with ``{"type": "end", "result": ...}``, waiting for the result, and setting it
    once. Subclasses make ``_queue``, ``_lock``, ``_done`` and ``_result``, and say when
    they have started."""

    def _started(self) -> bool:
        raise NotImplementedError

    def events(self) -> Iterator[dict]:
        """Blocking iterator over the child's events; the last is ``{"type": "end", ...}``.
        Consume it from one thread only."""
        if not self._started() and not self._done.is_set():
            self.start()
        while True:
            try:
                ev = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._done.is_set():  # ended, and its "end" was taken by an earlier reader
                    yield {"type": "end", "result": self._result}
                    return
                continue
            yield ev
            if ev.get("type") == "end":
                return

    def wait(self, timeout: float | None = None) -> FitTestResult:
        """The result, once every process has ended and been reaped (starts it if needed).
        ``FitTestError`` if ``timeout`` passes first."""
        if not self._started() and not self._done.is_set():
            self.start()
        if not self._done.wait(timeout):
            raise FitTestError(f"the fit test is still running after {timeout} s")
        assert self._result is not None
        return self._result

    def _finish(self, result: FitTestResult) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._result = result
            self._done.set()
        self._queue.put({"type": "end", "result": result})


class FitTestRun(_ResultStream):
    """One fit-test child process.

    ``start()`` launches it; ``events()`` yields its parsed JSON events (sample and mark
    events carry ``device_used`` as the process's own bytes, NVML used minus the baseline
    read before CUDA started, and ``device_used_total`` as NVML reported it; ``hello`` gains
    ``predicted_bytes`` and ``available_bytes``), ending with ``{"type": "end", "result":
    FitTestResult}``; ``wait()`` returns the result; ``cancel()`` stops it from any thread.
    """

    def __init__(self, request: FitTestRequest, spec=None, *, grace_s: float = GRACE_S):
        request.check()
        if spec is None:
            from cardfit.core.specs.resolve import resolve_model

            spec = resolve_model(request.model)
        self.request = request
        self.spec = spec
        self.grace_s = float(grace_s)
        self.child_spec = request.child_spec(spec)
        from cardfit.core.estimate.estimator import estimate

        self.estimate = estimate(spec, request.workload)
        self.prediction_bytes: int = self.estimate.total_bytes
        self.python: str | None = None
        self.started: str = ""
        self.device_total_bytes: int | None = None
        self.available_bytes: int | None = None
        self._proc: subprocess.Popen | None = None
        self._t0 = 0.0
        self._state = _State()
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._stop_reason: str | None = None  # "cancelled" | "timeout"
        self._kill_now = False
        self._done = threading.Event()
        self._result: FitTestResult | None = None
        self._threads: list[threading.Thread] = []
        if not request.cuda:
            self.device_total_bytes, self.available_bytes = host_memory()

    # ---- public --------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._done.is_set()

    @property
    def result(self) -> FitTestResult | None:
        return self._result

    @property
    def garbage_lines(self) -> int:
        return self._state.garbage

    @property
    def phase(self) -> str | None:
        return self._state.phase

    @property
    def last_sample(self) -> dict | None:
        return self._state.last_sample

    def start(self) -> "FitTestRun":
        if self._proc is not None or self._done.is_set():
            raise FitTestError("this fit test was already started; make a new FitTestRun")
        python = resolve_python(self.request.python)
        if not CHILD.is_file():
            raise FitTestError(f"the fit-test runner {CHILD} is missing from this installation")
        self.python = python
        self.started = _now_iso()
        kw: dict[str, Any] = {}
        if os.name == "posix":
            kw["start_new_session"] = True  # own process group: killpg reaches its helpers too
        else:
            kw["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PYTHONIOENCODING", "utf-8")
        try:
            self._proc = subprocess.Popen([python, "-u", str(CHILD), "-"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          cwd=str(CHILD.parent), env=env, close_fds=True, **kw)
        except OSError as exc:
            raise FitTestError(f"cannot start the fit-test process with {python}: "
                               f"{exc.strerror or exc}") from None
        self._t0 = time.monotonic()
        try:
            self._proc.stdin.write(json.dumps(self.child_spec).encode("utf-8"))
            self._proc.stdin.close()
        except OSError:
            pass  # it died at once: the monitor reports how
        for target, name in ((self._read_stdout, "stdout"), (self._read_stderr, "stderr"),
                             (self._monitor, "monitor")):
            t = threading.Thread(target=target, name=f"cardfit-fittest-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def _started(self) -> bool:
        return self._proc is not None

    def cancel(self, kill: bool = False) -> None:
        """Asks the child to stop: SIGTERM now, SIGKILL after the grace period (at once with
        ``kill``). Returns at once; safe from any thread; the result says "cancelled"."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = "cancelled"
            if kill:
                self._kill_now = True
            started = self._proc is not None
        if not started and not self._done.is_set():
            self._finish(self._make_result(None, "cancelled", False))

    # ---- threads -------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        stream = self._proc.stdout
        try:
            while True:
                line = stream.readline(MAX_LINE_BYTES)
                if not line:
                    break
                if not line.endswith(b"\n") and len(line) >= MAX_LINE_BYTES:
                    self._state.garbage += 1
                    while line and not line.endswith(b"\n"):  # drop the rest of it
                        line = stream.readline(MAX_LINE_BYTES)
                    continue
                self._take(line)
        except (OSError, ValueError):
            pass

    def _read_stderr(self) -> None:
        try:
            for raw in self._proc.stderr:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    self._stderr.append(text[:1000])
        except (OSError, ValueError):
            pass

    def _take(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            ev = json.loads(text)
        except ValueError:
            ev = None
        if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
            self._state.garbage += 1
            return
        self._absorb(ev)
        self._queue.put(ev)

    def _own(self, used: Any) -> int | None:
        used = _num(used)
        base = self._state.baseline
        if used is None or not self.request.cuda:
            return None
        return max(0, int(used - (base or 0)))

    def _absorb(self, ev: dict) -> None:
        st = self._state
        kind = ev["type"]
        if kind == "sample":
            raw = ev.get("device_used")
            ev["device_used_total"] = raw
            ev["device_used"] = own = self._own(raw)
            rec = {"t": _num(ev.get("t")), "phase": ev.get("phase") if isinstance(ev.get("phase"), str) else None,
                   "device_used": own, "allocated": _num(ev.get("allocated")),
                   "reserved": _num(ev.get("reserved")), "rss": _num(ev.get("rss"))}
            st.samples.append(rec)
            st.last_sample = rec
            if own is not None:
                st.peak_own = max(st.peak_own, own)
            if rec["rss"] is not None:
                st.peak_rss = max(st.peak_rss, int(rec["rss"]))
        elif kind == "phase":
            if isinstance(ev.get("phase"), str):
                st.phase = ev["phase"]
                st.phases.append({"phase": ev["phase"], "t": _num(ev.get("t"))})
        elif kind == "mark":
            raw = ev.get("device_used")
            ev["device_used_total"] = raw
            ev["device_used"] = own = self._own(raw)
            if own is not None:
                st.peak_own = max(st.peak_own, own)
            st.marks.append({k: v for k, v in ev.items() if k != "type"})
        elif kind == "hello":
            st.hello = ev
            st.baseline = _num(ev.get("baseline_device_used"))
            if self.request.cuda:
                total = _num(ev.get("device_total"))
                self.device_total_bytes = int(total) if total is not None else None
                if total is not None:
                    self.available_bytes = int(total - (st.baseline or 0))
            ev["predicted_bytes"] = self.prediction_bytes
            ev["available_bytes"] = self.available_bytes
            ev["device_total_bytes"] = self.device_total_bytes
        elif kind == "versions":
            st.versions = {k: v for k, v in ev.items() if k not in ("type", "t")}
        elif kind == "built":
            st.built = ev
        elif kind == "step":
            st.steps.append(ev)
        elif kind == "oom":
            st.oom = ev
        elif kind == "error":
            st.error = ev
        elif kind == "stopped":
            st.stopped = ev
        elif kind == "result":
            st.result = ev

    def _signal(self, sig) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            if os.name == "posix":
                os.killpg(proc.pid, sig)  # the child leads its own group (start_new_session)
            elif sig == getattr(signal, "SIGKILL", None):
                proc.kill()
            else:
                proc.terminate()
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def _monitor(self) -> None:
        proc = self._proc
        deadline = self._t0 + float(self.request.time_limit_s)
        term_at: float | None = None
        killed = False
        kill_sig = getattr(signal, "SIGKILL", signal.SIGTERM)
        # Only this thread signals and reaps the process, so a signal never reaches a
        # recycled pid: until wait() reaps it, the pid (and its group) stays ours.
        while True:
            try:
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            with self._lock:
                if self._stop_reason is None and now >= deadline:
                    self._stop_reason = "timeout"
                reason, kill_now = self._stop_reason, self._kill_now
            if reason and term_at is None:
                self._signal(signal.SIGTERM)
                term_at = now
            if term_at is not None and not killed and (kill_now or now - term_at >= self.grace_s):
                self._signal(kill_sig)
                killed = True
        if term_at is not None and os.name == "posix":
            try:  # helpers the child started (same group) go with it
                os.killpg(proc.pid, kill_sig)
            except OSError:
                pass
        for t in self._threads[:2]:
            t.join(timeout=5)
        with self._lock:
            reason = self._stop_reason
        self._finish(self._make_result(proc.returncode, reason, killed))

    # ---- the result ----------------------------------------------------------------------
    def _make_result(self, rc: int | None, reason: str | None, killed: bool) -> FitTestResult:
        st = self._state
        res = st.result or {}
        child = res.get("status") if isinstance(res.get("status"), str) else None
        if child is None and rc in (3, 4) and (st.oom or st.error):
            child = _CHILD_CODES[rc]  # died in cleanup after reporting the failure
        cuda = self.request.cuda
        # Where it stopped: as the child reported it, else the last phase it entered.
        phase = next((ev["phase"] for ev in (st.oom, st.error, st.stopped, res)
                      if ev and isinstance(ev.get("phase"), str)), None)
        if phase is None:
            phase = next((p["phase"] for p in reversed(st.phases) if p["phase"] != "cleanup"), None)

        peak = _num(res.get("peak_device_bytes")) if cuda else None
        if cuda and peak is None and (st.peak_own or st.samples):
            peak = st.peak_own
        rss = max(int(_num(res.get("peak_rss")) or 0), st.peak_rss) or None
        measured = peak if cuda else rss
        avail = self.available_bytes

        where = f" in {phase}" if phase else ""
        if child == "ok":
            status = "fits"
            if cuda:
                msg = f"fits: peak {fmt_bytes(peak or 0, 2)}"
                msg += f" of {fmt_bytes(avail, 2)} available" if avail else ""
            else:
                msg = f"fits: peak RSS {fmt_bytes(rss or 0, 2)} on the CPU"
                msg += f" (host RAM available {fmt_bytes(avail, 2)})" if avail else ""
        elif child == "oom":
            status = "oom"
            text = (st.oom or {}).get("message") or ""
            msg = f"does not fit: out of memory{where}"
            if measured:
                msg += f" at {fmt_bytes(measured, 2)}"
                msg += f" of {fmt_bytes(avail, 2)} available" if avail else ""
            if text:
                msg += f" ({str(text)[:300]})"
        elif child == "error":
            status = "error"
            text = str((st.error or {}).get("message") or res.get("error") or "unknown error")
            msg = f"the fit test failed{where}: {text.splitlines()[0][:500] if text else ''}"
            if "CUDA is not available" in text:
                msg += ". Run it on a machine with an NVIDIA GPU, point --python at an interpreter " \
                       "whose torch has CUDA, or test the pipeline on the CPU with --device cpu"
        elif reason == "timeout":
            status = "timeout"
            msg = f"no result within the time limit of {self.request.time_limit_s:g} s (stopped{where}"
            msg += f"; killed after a {self.grace_s:g} s grace period)" if killed else ")"
        elif reason == "cancelled":
            status = "cancelled"
            msg = f"cancelled{where}" + (" (killed)" if killed else "")
        elif child == "stopped":
            status = "cancelled"
            msg = f"stopped{where} by a signal from outside cardfit"
        else:
            status = "crashed"
            if rc is not None and rc < 0:
                try:
                    name = signal.Signals(-rc).name
                except ValueError:
                    name = f"signal {-rc}"
                msg = f"the fit-test process died from {name}{where} without a result"
            elif rc is None:
                msg = "the fit-test process did not start"
            else:
                msg = f"the fit-test process exited with code {rc}{where} without a result"
            tail = [ln for ln in self._stderr if ln.strip()][-8:]
            if tail:
                msg += "; last output: " + " | ".join(tail)[-1500:]
        if st.garbage:
            msg += f" ({st.garbage} unreadable output line{'s' if st.garbage != 1 else ''} skipped)"

        pred = self.prediction_bytes
        err = None
        if status == "fits" and peak:
            err = (pred - peak) / peak * 100.0  # > 0: the estimator over-estimates
        if cuda:
            total = _num(res.get("device_total"))
            if self.device_total_bytes is None and total is not None:
                self.device_total_bytes = int(total)
        gpu_name = st.versions.get("gpu") if cuda else "CPU"
        steps_s = _num(res.get("step_seconds"))
        tps = _num(res.get("tokens_per_second"))
        return FitTestResult(
            status=status, message=msg, phase=None if status == "fits" else phase,
            peak_device_bytes=int(peak) if peak is not None else None,
            predicted_bytes=int(pred), error_pct=err,
            device_total_bytes=self.device_total_bytes, available_bytes=avail,
            peak_rss_bytes=rss, step_seconds=steps_s, tokens_per_second=tps,
            samples=st.samples, phases=st.phases, marks=st.marks, versions=dict(st.versions),
            model={"id": self.spec.id, "name": self.spec.name, "params": int(self.estimate.params)},
            workload=self.request.workload.to_json(),
            gpu={"index": self.request.gpu_index if cuda else None,
                 "name": gpu_name if isinstance(gpu_name, str) else None},
            started=self.started or _now_iso(), device=self.request.resolved_device,
            builder=st.built.get("builder") if isinstance(st.built.get("builder"), str) else None,
            notes=[str(n) for n in st.built.get("notes") or []] if isinstance(st.built.get("notes"), list) else [],
            peak_reserved_bytes=_int_or_none(res.get("peak_reserved")) if cuda else None,
            peak_allocated_bytes=_int_or_none(res.get("peak_allocated")) if cuda else None,
            wall_seconds=round(time.monotonic() - self._t0, 3) if self._t0 else None,
            exit_code=rc, garbage_lines=st.garbage, python=self.python)


def _int_or_none(v: Any) -> int | None:
    v = _num(v)
    return int(v) if v is not None else None


def run_fit_test(request: FitTestRequest, spec=None) -> FitTestResult:
    """Runs one fit test to the end and returns its result."""
    return FitTestRun(request, spec).start().wait()


# ---- search -----------------------------------------------------------------------------

@dataclass
class Probe:
    value: int
    result: FitTestResult

    @property
    def fits(self) -> bool:
        return self.result.status == "fits"

    def to_json(self) -> dict:
        r = self.result
        return {"value": self.value, "status": r.status, "message": r.message,
                "peak_device_bytes": r.peak_device_bytes, "peak_rss_bytes": r.peak_rss_bytes,
                "predicted_bytes": r.predicted_bytes, "error_pct": r.error_pct,
                "step_seconds": r.step_seconds, "tokens_per_second": r.tokens_per_second}


@dataclass
class SearchResult:
    axis: str  # "batch" | "seq"
    field: str  # the Workload field searched: "batch", "seq" (training) or "prompt" (inference)
    best: int | None  # the largest value that fit; None when not even ``lo`` fits (or it stopped first)
    hint: int | None  # the estimator's prediction of it
    lo: int
    hi: int
    status: str  # "done" | "none-fits" | "error" | "cancelled"
    message: str
    probes: list[Probe] = field(default_factory=list)

    @property
    def best_result(self) -> FitTestResult | None:
        for p in reversed(self.probes):
            if p.value == self.best and p.fits:
                return p.result
        return None

    def to_json(self) -> dict:
        return {"schema": "cardfit.fittest-search/1", "axis": self.axis, "field": self.field,
                "best": self.best, "hint": self.hint, "lo": self.lo, "hi": self.hi,
                "status": self.status, "message": self.message,
                "probes": [p.to_json() for p in self.probes]}


class _Stop(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def search_field(workload: Workload, axis: str) -> str:
    if axis == "batch":
        return "batch"
    if axis == "seq":
        return "seq" if workload.training else "prompt"
    raise UsageError(f"--search {axis!r}: use batch or seq")


def estimator_hint(spec, workload: Workload, axis: str, available: int | None) -> int | None:
    """The estimator's largest batch / sequence length for ``available`` bytes (None when
    the memory is unknown)."""
    if not available:
        return None
    from cardfit.core.estimate.solver import max_batch, max_seq

    n = max_batch(spec, workload, available) if axis == "batch" else max_seq(spec, workload, available)
    return n or None


def _available_for(request: FitTestRequest) -> int | None:
    if not request.cuda:
        try:
            import psutil

            return int(psutil.virtual_memory().available)
        except Exception:
            return None
    try:
        from cardfit.core.hardware.gpu import probe_gpus

        for g in probe_gpus():
            if g.index == int(request.resolved_device.split(":")[1]):
                return g.available_bytes
    except Exception:
        return None
    return None


def search_max(request: FitTestRequest, axis: str = "batch", lo: int | None = None, hi: int | None = None,
               on_probe: Callable[[Probe], None] | None = None, *, spec=None, hint: int | None = None,
               resolution: int | None = None,
               runner: Callable[[FitTestRequest, Any], FitTestResult] | None = None,
               stop: threading.Event | None = None) -> SearchResult:
    """The largest ``axis`` value (batch, or sequence length: the prompt for inference) that
    really fits, each probe a fresh fit-test process (``runner``, by default
    ``run_fit_test``). Starts at the estimator's answer (``hint``), brackets it with steps
    that double, then bisects to within ``resolution`` (1 for batch, 128 tokens for seq).
    A probe that ends in anything but fits / oom stops the search ("error"); ``stop`` set
    stops it before the next probe ("cancelled")."""
    if spec is None:
        from cardfit.core.specs.resolve import resolve_model

        spec = resolve_model(request.model)
    name = search_field(request.workload, axis)
    if lo is None:
        lo = 1 if axis == "batch" else min(128, getattr(request.workload, name))
    if hi is None:
        if axis == "batch":
            hi = 4096
        else:
            cap = max(lo, int(spec.max_position or 4096))
            hi = cap if request.workload.training else max(lo, cap - request.workload.new)
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
        raise UsageError(f"search range {lo}..{hi} is empty: need 1 <= lo <= hi")
    if resolution is None:
        resolution = 1 if axis == "batch" else 128
    resolution = max(1, int(resolution))
    if hint is None:
        hint = estimator_hint(spec, request.workload, axis, _available_for(request))
    run = runner or run_fit_test
    probes: list[Probe] = []
    seen: dict[int, bool] = {}

    def fits(v: int) -> bool:
        if v in seen:
            return seen[v]
        if stop is not None and stop.is_set():
            raise _Stop("cancelled", f"search cancelled before trying {name} {v}")
        req = replace(request, workload=request.workload.with_(**{name: v}))
        result = run(req, spec)
        probe = Probe(v, result)
        probes.append(probe)
        if on_probe is not None:
            on_probe(probe)
        if result.status == "cancelled":
            raise _Stop("cancelled", f"search cancelled while trying {name} {v}")
        if result.status not in ("fits", "oom"):
            raise _Stop("error", f"{name} {v}: {result.status}: {result.message}")
        seen[v] = result.status == "fits"
        return seen[v]

    start = min(max(hint or lo, lo), hi)
    good: int | None = None
    bad: int | None = None
    try:
        step = max(resolution, start // 4)
        if fits(start):
            good = start
            while good < hi:
                nxt = min(hi, good + step)
                if fits(nxt):
                    good = nxt
                    step *= 2
                else:
                    bad = nxt
                    break
        else:
            bad = start
            while bad > lo:
                nxt = max(lo, bad - step)
                if fits(nxt):
                    good = nxt
                    break
                bad = nxt
                step *= 2
        if good is not None and bad is not None:
            while bad - good > resolution:
                mid = (good + bad) // 2
                if fits(mid):
                    good = mid
                else:
                    bad = mid
    except _Stop as stop_exc:
        return SearchResult(axis, name, good, hint, lo, hi, stop_exc.status, str(stop_exc), probes)
    if good is None:
        return SearchResult(axis, name, None, hint, lo, hi, "none-fits",
                            f"not even {name} {lo} fits", probes)
    capped = " (the top of the range)" if good == hi else ""
    pred = f"; the estimator predicted {hint}" if hint else ""
    return SearchResult(axis, name, good, hint, lo, hi, "done",
                        f"largest {name} that fits: {good}{capped}{pred}", probes)
