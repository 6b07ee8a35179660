"""The multi-GPU fit test's parent side: starts one ``child.py`` per GPU the way ``torchrun``
does (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in each one's environment, a
free port chosen here), reads each rank's JSON stream on its own threads and tags every
event with its rank, and turns the whole run into one ``FitTestResult`` whose ``per_gpu``
list holds each rank's peak (from that rank's own NVML sampler) next to the estimator's
per-GPU prediction, with the host RAM of all ranks together in ``peak_rss_bytes``.

Every rank leads its own process group (session). Whatever ends the run (a rank out of
memory, a rank that fails or dies, cancel, the time limit), every rank is stopped: SIGTERM
(a rank still in Python unwinds and reports), SIGKILL after a grace period (a rank blocked
inside an NCCL / gloo collective never returns to Python), and each is reaped by the one
monitor thread, so no zombie is left. The rank that failed first is named in the result:
an out-of-memory anywhere wins (it makes its peers fail in their collectives), then a
death or an error that is not a peer's lost connection.

The model is sharded inside each rank by ``distributed.py`` (FSDP2, DeepSpeed ZeRO, DDP).
On the CPU (``device="cpu"``) the ranks use gloo: CI runs the same path end to end.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any

from cardfit.core.errors import FitTestError, UsageError
from cardfit.core.fittest.launcher import (CHILD, GRACE_S, MAX_LINE_BYTES, STDERR_LINES, FitTestRequest,
                                           _now_iso, _num, _ResultStream, host_memory,
                                           resolve_python)
from cardfit.core.fittest.result import FitTestResult
from cardfit.core.units import fmt_bytes

PEER_GRACE_S = 3.0  # SIGTERM -> SIGKILL for the ranks stopped because another one failed
MULTI_OPTIMS = ("adamw", "sgd", "sgd-momentum", "adafactor", "lion")
# An error a rank reports because a peer went away (not a cause of its own).
_PEER_LOST = re.compile(r"connection (?:closed|reset|refused)|closed by peer|broken pipe|peer|"
                        r"gloo|nccl|timed? ?out|socket|processgroup|store|watchdog|abort", re.I)


def check_multi(request: FitTestRequest) -> None:
    """``UsageError`` / ``FitTestError`` naming what a multi-GPU fit test cannot run."""
    w = request.workload
    if w.gpus < 2:
        raise UsageError(f"the multi-GPU fit test needs --gpus 2 or more, not {w.gpus}")
    # Every field but the sharding ones, by the single-GPU request's own checks.
    replace(request, workload=w.with_(gpus=1, zero=0, fsdp=None, offload="none")).check()
    if not w.training:
        raise FitTestError("the multi-GPU fit test runs training (FSDP / ZeRO / data parallel); "
                           "test inference with --gpus 1")
    if w.task == "galore":
        raise FitTestError("GaLore does not run under FSDP / ZeRO sharding; test it with --gpus 1")
    if w.dtype in ("int8", "nf4", "fp4") or w.task == "qlora":
        raise FitTestError(f"the multi-GPU fit test does not shard {w.dtype} weights; test --dtype bf16 "
                           "or fp32 (or QLoRA with --gpus 1)")
    if w.optim not in MULTI_OPTIMS:
        raise FitTestError(f"--optim {w.optim} is not tested across GPUs; use one of {', '.join(MULTI_OPTIMS)}")
    if w.offload != "none" and not (w.zero or w.fsdp):
        raise FitTestError("--offload needs --fsdp or --zero: plain data parallel keeps everything on the GPU")
    if w.fsdp and w.offload == "optimizer":
        raise FitTestError("FSDP2 offloads parameters, gradients and optimizer states together "
                           "(CPUOffloadPolicy): use --fsdp ... --offload params, or --zero 2 --offload optimizer")
    if w.fsdp and w.amp == "fp16":
        raise FitTestError("--fsdp with --amp fp16 needs a sharded gradient scaler; use --amp bf16")
    if w.zero and w.offload == "params" and w.zero != 3:
        raise FitTestError("DeepSpeed offloads parameters only with ZeRO stage 3: use --zero 3 --offload params")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the OS picks it), for MASTER_PORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def gpu_count() -> int | None:
    """NVIDIA GPUs NVML sees (None when NVML is not there)."""
    try:
        from cardfit.core.hardware import nvml

        st = nvml.state()
        return st.device_count if st.ok else None
    except Exception:
        return None


class _Rank:
    """One rank's process and what its stream said."""

    def __init__(self, rank: int, device: str, gpu_index: int | None):
        self.rank = rank
        self.device = device
        self.gpu_index = gpu_index
        self.proc: subprocess.Popen | None = None
        self.threads: list[threading.Thread] = []
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self.hello: dict = {}
        self.baseline: int | None = None
        self.device_total: int | None = None
        self.versions: dict = {}
        self.built: dict = {}
        self.phase: str | None = None
        self.samples: list[dict] = []
        self.phases: list[dict] = []
        self.marks: list[dict] = []
        self.oom: dict | None = None
        self.error: dict | None = None
        self.stopped: dict | None = None
        self.result: dict | None = None
        self.garbage = 0
        self.peak_own = 0
        self.peak_rss = 0
        self.last_rss = 0
        self.last_sample: dict | None = None
        self.failed_at: float | None = None  # parent clock, when it reported oom / error or died
        self.signalled = False  # we sent it SIGTERM / SIGKILL
        self.killed = False
        self.term_at: float | None = None
        self.returncode: int | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.returncode is None

    def own(self, used: Any) -> int | None:
        used = _num(used)
        if used is None or not self.device.startswith("cuda"):
            return None
        return max(0, int(used - (self.baseline or 0)))

    @property
    def available(self) -> int | None:
        if self.device_total is None:
            return None
        return int(self.device_total - (self.baseline or 0))

    @property
    def peak(self) -> int | None:
        if not self.device.startswith("cuda"):
            return None
        res = _num((self.result or {}).get("peak_device_bytes"))
        return int(max(res or 0, self.peak_own)) if (res is not None or self.samples) else None

    @property
    def stop_phase(self) -> str | None:
        """Where it stopped: as the child reported it, else the last phase it entered."""
        for ev in (self.oom, self.error, self.stopped, self.result):
            if ev and isinstance(ev.get("phase"), str):
                return ev["phase"]
        return next((p["phase"] for p in reversed(self.phases) if p["phase"] != "cleanup"), None)

    @property
    def child_status(self) -> str | None:
        st = (self.result or {}).get("status")
        if isinstance(st, str):
            return st
        if self.oom:
            return "oom"
        if self.error:
            return "error"
        return None

    def signal(self, sig) -> None:
        if self.proc is None or self.returncode is not None:
            return
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, sig)  # it leads its own group (start_new_session)
            elif sig == getattr(signal, "SIGKILL", None):
                self.proc.kill()
            else:
                self.proc.terminate()
        except (ProcessLookupError, PermissionError, OSError):
            pass


class MultiFitTestRun(_ResultStream):
    """A fit test over ``request.workload.gpus`` ranks; the same interface as
    ``FitTestRun`` (``start``, ``events``, ``cancel``, ``wait``, ``prediction_bytes``,
    ``phase``, ``last_sample``, ``available_bytes``), every event carrying ``"rank"``.

    ``gpu_indices``: the GPUs, one per rank (default: ``gpu_index`` and the ones after
    it). ``fault`` / ``fault_rank``: TEST-ONLY, injected by child.py into that rank alone.
    """

    def __init__(self, request: FitTestRequest, spec=None, *, gpu_indices: list[int] | None = None,
                 grace_s: float = GRACE_S, peer_grace_s: float = PEER_GRACE_S,
                 fault: str | None = None, fault_rank: int = 0):
        check_multi(request)
        n = request.workload.gpus
        if spec is None:
            from cardfit.core.specs.resolve import resolve_model

            spec = resolve_model(request.model)
        self.request = request
        self.spec = spec
        self.n = n
        self.grace_s = float(grace_s)
        self.peer_grace_s = float(peer_grace_s)
        cuda = request.cuda
        if cuda:
            if gpu_indices is None:
                gpu_indices = list(range(request.gpu_index, request.gpu_index + n))
            if len(gpu_indices) != n or len(set(gpu_indices)) != n or any(
                    not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in gpu_indices):
                raise UsageError(f"--gpus {n} needs {n} different GPU indices, not {gpu_indices!r}")
            have = gpu_count()
            if have is not None and max(gpu_indices) >= have:
                raise FitTestError(f"--gpus {n} asks for GPU {max(gpu_indices)}, and this machine has "
                                   f"{have} GPU{'s' if have != 1 else ''} (indices 0..{have - 1})")
            self.devices = [f"cuda:{i}" for i in gpu_indices]
        else:
            gpu_indices = [None] * n
            self.devices = ["cpu"] * n
        self.gpu_indices = gpu_indices
        base = request.child_spec(spec)
        base["distributed"] = {"world_size": n, "strategy": _strategy_name(request.workload)}
        self.child_specs = []
        fault = fault or request.fault  # TEST-ONLY, to one rank
        for r in range(n):
            s = dict(base, device=self.devices[r])
            if fault and r == fault_rank:
                s["fault"] = fault
            elif "fault" in s:
                del s["fault"]
            self.child_specs.append(s)
        from cardfit.core.estimate.estimator import estimate

        self.estimate = estimate(spec, request.workload)
        self.prediction_bytes: int = self.estimate.total_bytes  # per GPU
        self.predicted_host_bytes: int = sum(c.bytes for c in self.estimate.ram_components)
        self.ranks = [_Rank(r, self.devices[r], gpu_indices[r]) for r in range(n)]
        self.python: str | None = None
        self.started = ""
        self.port: int | None = None
        self.host_total_bytes, self.host_available_bytes = host_memory()
        self._t0 = 0.0
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._stop_reason: str | None = None  # "cancelled" | "timeout" | "failed"
        self._kill_now = False
        self._done = threading.Event()
        self._result: FitTestResult | None = None
        self._monitor_thread: threading.Thread | None = None
        self._host_rss_peak = 0

    # ---- the FitTestRun interface -----------------------------------------------------
    @property
    def pids(self) -> list[int]:
        return [r.proc.pid for r in self.ranks if r.proc is not None]

    @property
    def running(self) -> bool:
        return self._monitor_thread is not None and not self._done.is_set()

    @property
    def result(self) -> FitTestResult | None:
        return self._result

    @property
    def phase(self) -> str | None:
        return self.ranks[0].phase

    @property
    def available_bytes(self) -> int | None:
        if not self.request.cuda:
            return self.host_available_bytes
        av = [r.available for r in self.ranks if r.available is not None]
        return min(av) if av else None

    @property
    def device_total_bytes(self) -> int | None:
        if not self.request.cuda:
            return self.host_total_bytes
        tot = [r.device_total for r in self.ranks if r.device_total is not None]
        return min(tot) if tot else None

    @property
    def last_sample(self) -> dict | None:
        """The busiest GPU's latest reading, and the RSS of all ranks together."""
        last = [r.last_sample for r in self.ranks if r.last_sample]
        if not last:
            return None
        used = [s["device_used"] for s in last if s.get("device_used") is not None]
        return {"device_used": max(used) if used else None, "rss": sum(r.last_rss for r in self.ranks),
                "phase": self.phase}

    def start(self) -> "MultiFitTestRun":
        if self._monitor_thread is not None or self._done.is_set():
            raise FitTestError("this fit test was already started; make a new MultiFitTestRun")
        python = resolve_python(self.request.python)
        if not CHILD.is_file():
            raise FitTestError(f"the fit-test runner {CHILD} is missing from this installation")
        self.python = python
        self.started = _now_iso()
        self.port = free_port()
        self._t0 = time.monotonic()
        try:
            for r in self.ranks:
                self._spawn(r, python)
        except FitTestError:
            for r in self.ranks:  # the ones already started go too
                r.signal(getattr(signal, "SIGKILL", signal.SIGTERM))
                if r.proc is not None:
                    r.proc.wait()
                    r.returncode = r.proc.returncode
            raise
        self._monitor_thread = threading.Thread(target=self._monitor, name="cardfit-multi-monitor", daemon=True)
        self._monitor_thread.start()
        return self

    def _started(self) -> bool:
        return self._monitor_thread is not None

    def cancel(self, kill: bool = False) -> None:
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = "cancelled"
            if kill:
                self._kill_now = True
            started = self._monitor_thread is not None
        if not started and not self._done.is_set():
            self._finish(self._make_result())

    # ---- processes ----------------------------------------------------------------------
    def _env(self, r: _Rank) -> dict:
        env = dict(os.environ)
        env.update({"RANK": str(r.rank), "LOCAL_RANK": str(r.rank), "WORLD_SIZE": str(self.n),
                    "LOCAL_WORLD_SIZE": str(self.n), "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(self.port), "CARDFIT_RANK": str(r.rank), "PYTHONUNBUFFERED": "1"})
        env.setdefault("PYTHONIOENCODING", "utf-8")
        env.setdefault("CARDFIT_DIST_TIMEOUT", str(int(max(60, self.request.time_limit_s))))
        if not self.request.cuda:
            # torchrun's choice: N ranks must not each start a thread per core.
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.n)))
        return env

    def _spawn(self, r: _Rank, python: str) -> None:
        kw: dict[str, Any] = {}
        if os.name == "posix":
            kw["start_new_session"] = True
        else:
            kw["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        try:
            r.proc = subprocess.Popen([python, "-u", str(CHILD), "-"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(CHILD.parent),
                                      env=self._env(r), close_fds=True, **kw)
        except OSError as exc:
            raise FitTestError(f"cannot start rank {r.rank} of the fit test with {python}: "
                               f"{exc.strerror or exc}") from None
        try:
            r.proc.stdin.write(json.dumps(self.child_specs[r.rank]).encode("utf-8"))
            r.proc.stdin.close()
        except OSError:
            pass  # it died at once: the monitor reports how
        for target, name in ((self._read_stdout, "stdout"), (self._read_stderr, "stderr")):
            t = threading.Thread(target=target, args=(r,), name=f"cardfit-rank{r.rank}-{name}", daemon=True)
            r.threads.append(t)
            t.start()

    def _read_stdout(self, r: _Rank) -> None:
        stream = r.proc.stdout
        try:
            while True:
                line = stream.readline(MAX_LINE_BYTES)
                if not line:
                    break
                if not line.endswith(b"\n") and len(line) >= MAX_LINE_BYTES:
                    r.garbage += 1
                    while line and not line.endswith(b"\n"):
                        line = stream.readline(MAX_LINE_BYTES)
                    continue
                self._take(r, line)
        except (OSError, ValueError):
            pass

    def _read_stderr(self, r: _Rank) -> None:
        try:
            for raw in r.proc.stderr:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    r.stderr.append(text[:1000])
        except (OSError, ValueError):
            pass

    def _take(self, r: _Rank, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            ev = json.loads(text)
        except ValueError:
            ev = None
        if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
            r.garbage += 1
            return
        ev["rank"] = r.rank  # the parent knows which pipe it came from
        self._absorb(r, ev)
        self._queue.put(ev)

    def _absorb(self, r: _Rank, ev: dict) -> None:
        kind = ev["type"]
        if kind == "sample":
            raw = ev.get("device_used")
            ev["device_used_total"] = raw
            ev["device_used"] = own = r.own(raw)
            rec = {"t": _num(ev.get("t")), "phase": ev.get("phase") if isinstance(ev.get("phase"), str) else None,
                   "device_used": own, "allocated": _num(ev.get("allocated")),
                   "reserved": _num(ev.get("reserved")), "rss": _num(ev.get("rss")), "rank": r.rank}
            r.samples.append(rec)
            r.last_sample = rec
            if own is not None:
                r.peak_own = max(r.peak_own, own)
            if rec["rss"] is not None:
                r.last_rss = int(rec["rss"])
                r.peak_rss = max(r.peak_rss, r.last_rss)
                with self._lock:  # all ranks' RSS at their latest readings: the host's share
                    self._host_rss_peak = max(self._host_rss_peak, sum(x.last_rss for x in self.ranks))
        elif kind == "phase":
            if isinstance(ev.get("phase"), str):
                r.phase = ev["phase"]
                r.phases.append({"phase": ev["phase"], "t": _num(ev.get("t")), "rank": r.rank})
        elif kind == "mark":
            raw = ev.get("device_used")
            ev["device_used_total"] = raw
            ev["device_used"] = own = r.own(raw)
            if own is not None:
                r.peak_own = max(r.peak_own, own)
            r.marks.append({k: v for k, v in ev.items() if k != "type"})
        elif kind == "hello":
            r.hello = ev
            r.baseline = _num(ev.get("baseline_device_used"))
            if self.request.cuda:
                total = _num(ev.get("device_total"))
                r.device_total = int(total) if total is not None else None
            ev["predicted_bytes"] = self.prediction_bytes
            ev["available_bytes"] = r.available
            ev["device_total_bytes"] = r.device_total
            ev["world_size"] = self.n
        elif kind == "versions":
            r.versions = {k: v for k, v in ev.items() if k not in ("type", "t", "rank")}
        elif kind == "built":
            r.built = ev
        elif kind in ("oom", "error"):
            setattr(r, kind, ev)
            with self._lock:
                if r.failed_at is None:
                    r.failed_at = time.monotonic()
        elif kind == "stopped":
            r.stopped = ev
        elif kind == "result":
            r.result = ev
            if ev.get("status") in ("oom", "error"):
                with self._lock:
                    if r.failed_at is None:
                        r.failed_at = time.monotonic()

    # ---- the monitor ----------------------------------------------------------------------
    def _monitor(self) -> None:
        deadline = self._t0 + float(self.request.time_limit_s)
        kill_sig = getattr(signal, "SIGKILL", signal.SIGTERM)
        while True:
            for r in self.ranks:  # only this thread reaps, so a pid is never recycled under us
                if r.returncode is None and r.proc is not None:
                    rc = r.proc.poll()
                    if rc is not None:
                        r.returncode = rc
                        with self._lock:
                            bad = rc != 0 or r.child_status not in (None, "ok")
                            if bad and r.failed_at is None and not r.signalled:
                                r.failed_at = time.monotonic()
            if not any(r.alive for r in self.ranks):
                break
            now = time.monotonic()
            with self._lock:
                if self._stop_reason is None and now >= deadline:
                    self._stop_reason = "timeout"
                if self._stop_reason is None and any(r.failed_at is not None for r in self.ranks):
                    self._stop_reason = "failed"
                reason, kill_now = self._stop_reason, self._kill_now
            if reason:
                for r in self.ranks:
                    if not r.alive:
                        continue
                    if r.term_at is None:
                        # A rank that reported its own failure is unwinding: let it report
                        # (its peak) for a grace period before the signal.
                        own_failure = reason == "failed" and r.failed_at is not None
                        if not own_failure or now - r.failed_at >= self.grace_s or kill_now:
                            r.signal(signal.SIGTERM)
                            r.signalled = True
                            r.term_at = now
                    grace = self.peer_grace_s if reason == "failed" else self.grace_s
                    if r.term_at is not None and not r.killed and (kill_now or now - r.term_at >= grace):
                        r.signal(kill_sig)
                        r.killed = True
            time.sleep(0.05)
        for r in self.ranks:
            r.proc.wait()  # already ended: reaps it if poll() has not
            if os.name == "posix" and r.signalled:
                try:  # helpers a rank started (same group) go with it
                    os.killpg(r.proc.pid, kill_sig)
                except OSError:
                    pass
        for r in self.ranks:
            for t in r.threads:
                t.join(timeout=5)
        self._finish(self._make_result())

    # ---- the result -----------------------------------------------------------------------
    def _root_cause(self) -> _Rank | None:
        """The rank whose failure stopped the run (see the module's docstring)."""
        failed = [r for r in self.ranks if r.failed_at is not None]
        if not failed:
            return None
        ooms = [r for r in failed if r.child_status == "oom"]
        if ooms:
            return min(ooms, key=lambda r: r.failed_at)
        own = [r for r in failed if not (r.child_status == "error" and _PEER_LOST.search(_error_text(r)))]
        return min(own or failed, key=lambda r: r.failed_at)

    def _rank_status(self, r: _Rank) -> str:
        st = r.child_status
        if st == "ok" and r.returncode == 0:
            return "fits"
        if st in ("oom", "error"):
            return st
        if st == "stopped" or r.signalled:
            return "stopped"
        if r.proc is None:
            return "not started"
        return "crashed"

    def _per_gpu(self) -> list[dict]:
        out = []
        cuda = self.request.cuda
        for r in self.ranks:
            res = r.result or {}
            peak = r.peak
            err = None
            if cuda and peak and self._rank_status(r) == "fits":
                err = (self.prediction_bytes - peak) / peak * 100.0
            out.append({
                "rank": r.rank, "gpu_index": r.gpu_index, "device": r.device,
                "name": r.versions.get("gpu") if cuda else "CPU",
                "status": self._rank_status(r),
                "phase": None if self._rank_status(r) == "fits" else r.stop_phase,
                "message": _error_text(r)[:500] or str((r.oom or {}).get("message") or "")[:500] or None,
                "peak_device_bytes": peak, "predicted_bytes": int(self.prediction_bytes), "error_pct": err,
                "available_bytes": r.available if cuda else None, "device_total_bytes": r.device_total,
                "peak_rss_bytes": max(int(_num(res.get("peak_rss")) or 0), r.peak_rss) or None,
                "peak_reserved_bytes": _int(res.get("peak_reserved")) if cuda else None,
                "peak_allocated_bytes": _int(res.get("peak_allocated")) if cuda else None,
                "step_seconds": _num(res.get("step_seconds")),
                "exit_code": r.returncode, "samples": r.samples,
            })
        return out

    def _make_result(self) -> FitTestResult:
        cuda = self.request.cuda
        with self._lock:
            reason = self._stop_reason
        per_gpu = self._per_gpu()
        root = self._root_cause()
        all_ok = all(g["status"] == "fits" for g in per_gpu) and self._monitor_thread is not None
        peaks = [g["peak_device_bytes"] for g in per_gpu if g["peak_device_bytes"] is not None]
        peak = max(peaks) if peaks else None
        rss_sum = sum(g["peak_rss_bytes"] or 0 for g in per_gpu)
        host_rss = max(self._host_rss_peak, max((g["peak_rss_bytes"] or 0 for g in per_gpu), default=0)) or None
        avail = self.available_bytes
        stopped_rest = " (the other rank was stopped)" if self.n == 2 else " (the other ranks were stopped)"

        def who(r: _Rank) -> str:
            return f"rank {r.rank} ({r.device})"

        if all_ok:  # every rank ran to the end, whatever came after
            status = "fits"
            if cuda:
                msg = (f"fits on {self.n} GPUs: peak {fmt_bytes(peak or 0, 2)} on the busiest GPU"
                       + (f" of {fmt_bytes(avail, 2)} available" if avail else ""))
            else:
                msg = f"fits: {self.n} ranks on the CPU, peak RSS {fmt_bytes(host_rss or 0, 2)} together"
        elif root is not None and (reason == "failed" or root.child_status == "oom"):
            where = f" in {root.stop_phase}" if root.stop_phase else ""
            st = root.child_status
            if st == "oom":
                status = "oom"
                measured = root.peak if cuda else root.peak_rss
                msg = f"does not fit: out of memory on {who(root)}{where}"
                if measured:
                    msg += f" at {fmt_bytes(measured, 2)}"
                    if cuda and root.available:
                        msg += f" of {fmt_bytes(root.available, 2)} available"
                text = (root.oom or {}).get("message")
                if text:
                    msg += f" ({str(text)[:300]})"
                msg += stopped_rest
            elif st == "stopped":
                status = "cancelled"
                msg = f"{who(root)} was stopped{where} by a signal from outside cardfit{stopped_rest}"
            elif st == "error":
                status = "error"
                text = _error_text(root) or "unknown error"
                msg = f"the fit test failed on {who(root)}{where}: {text.splitlines()[0][:500]}{stopped_rest}"
            else:
                status = "crashed"
                rc = root.returncode
                if rc is not None and rc < 0:
                    try:
                        name = signal.Signals(-rc).name
                    except ValueError:
                        name = f"signal {-rc}"
                    msg = f"{who(root)} died from {name}{where} without a result{stopped_rest}"
                else:
                    msg = f"{who(root)} exited with code {rc}{where} without a result{stopped_rest}"
                tail = [ln for ln in root.stderr if ln.strip()][-6:]
                if tail:
                    msg += "; its last output: " + " | ".join(tail)[-1200:]
        elif reason == "timeout":
            status = "timeout"
            msg = (f"no result within the time limit of {self.request.time_limit_s:g} s; every rank was stopped"
                   + (" (some killed after the grace period)" if any(r.killed for r in self.ranks) else ""))
        elif reason == "cancelled":
            status = "cancelled"
            where = f" in {self.ranks[0].stop_phase}" if self.ranks[0].stop_phase else ""
            msg = f"cancelled{where}; every rank was stopped" + (
                " (killed)" if any(r.killed for r in self.ranks) else "")
        else:
            status = "crashed"
            bad = [g for g in per_gpu if g["status"] != "fits"]
            msg = "the multi-GPU fit test ended without a result from " + ", ".join(
                f"rank {g['rank']} ({g['status']})" for g in bad) if bad else "the multi-GPU fit test did not start"
        garbage = sum(r.garbage for r in self.ranks)
        if garbage:
            msg += f" ({garbage} unreadable output line{'s' if garbage != 1 else ''} skipped)"

        # The figures a single-GPU reader looks at come from the busiest rank (the one that
        # decides whether it fits); per_gpu has every rank's.
        key = (lambda r: r.peak or 0) if cuda else (lambda r: r.peak_rss)
        worst = root if (root is not None and status != "fits") else max(self.ranks, key=key)
        pred = int(self.prediction_bytes)
        err = (pred - peak) / peak * 100.0 if (status == "fits" and peak) else None
        steps = [g["step_seconds"] for g in per_gpu if g["step_seconds"]]
        tps = [_num((r.result or {}).get("tokens_per_second")) for r in self.ranks]
        tps = [t for t in tps if t]
        built = next((r.built for r in self.ranks if isinstance(r.built.get("notes"), list)), {})
        notes = [str(n) for n in built.get("notes") or []]
        notes.append(f"{self.n} ranks ({_strategy_name(self.request.workload)}); predicted per GPU "
                     f"{fmt_bytes(pred, 2)}, host RAM predicted {fmt_bytes(self.predicted_host_bytes, 2)}, "
                     f"measured {fmt_bytes(host_rss or 0, 2)} (sum of the ranks' peaks {fmt_bytes(rss_sum, 2)})")
        exit_code = root.returncode if (root is not None and status != "fits") else (
            0 if status == "fits" else next((r.returncode for r in self.ranks if r.returncode), None))
        versions = next((r.versions for r in self.ranks if r.versions), {})
        gpu_name = versions.get("gpu") if cuda else "CPU"
        return FitTestResult(
            status=status, message=msg, phase=None if status == "fits" else (worst.stop_phase if worst else None),
            peak_device_bytes=int(peak) if (cuda and peak is not None) else None,
            predicted_bytes=pred, error_pct=err,
            device_total_bytes=self.device_total_bytes, available_bytes=avail,
            peak_rss_bytes=host_rss, step_seconds=max(steps) if steps else None,
            tokens_per_second=sum(tps) if len(tps) == self.n else None,
            samples=list(worst.samples), phases=list(worst.phases), marks=list(worst.marks),
            versions=dict(versions),
            model={"id": self.spec.id, "name": self.spec.name, "params": int(self.estimate.params)},
            workload=self.request.workload.to_json(),
            gpu={"index": self.gpu_indices[0] if cuda else None,
                 "name": gpu_name if isinstance(gpu_name, str) else None,
                 "indices": list(self.gpu_indices) if cuda else [], "count": self.n},
            started=self.started or _now_iso(), device=",".join(self.devices) if cuda else "cpu",
            builder=built.get("builder") if isinstance(built.get("builder"), str) else None,
            notes=notes,
            peak_reserved_bytes=max((g["peak_reserved_bytes"] or 0 for g in per_gpu), default=0) or None if cuda else None,
            peak_allocated_bytes=max((g["peak_allocated_bytes"] or 0 for g in per_gpu), default=0) or None if cuda else None,
            wall_seconds=round(time.monotonic() - self._t0, 3) if self._t0 else None,
            exit_code=exit_code, garbage_lines=garbage, python=self.python,
            per_gpu=per_gpu)


def _strategy_name(w) -> str:
    if w.fsdp:
        return f"FSDP2 {'full shard' if w.fsdp == 'full' else 'grad-op'}" + (
            f", offload {w.offload}" if w.offload != "none" else "")
    if w.zero:
        return f"DeepSpeed ZeRO-{w.zero}" + (f", offload {w.offload}" if w.offload != "none" else "")
    return "DDP"


def _error_text(r: _Rank) -> str:
    return str((r.error or {}).get("message") or (r.result or {}).get("error") or "")


def _int(v: Any) -> int | None:
    v = _num(v)
    return int(v) if v is not None else None


def run_multi_fit_test(request: FitTestRequest, spec=None, **kw) -> FitTestResult:
    """Runs a multi-GPU fit test to the end and returns its result."""
    return MultiFitTestRun(request, spec, **kw).start().wait()
