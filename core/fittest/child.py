"""The fit-test child: builds a model on one device, runs a few real steps, and streams
what memory did as JSON lines on stdout. Run as a script in a fresh process:

    python child.py SPEC.json        (or "-" to read the spec from stdin)

It needs only the standard library and torch (transformers, peft, bitsandbytes, pynvml
and psutil are used when importable), because it may run under the user's own training
interpreter rather than cardfit's. It never imports cardfit. Every line is one JSON
object with a "type": hello, phase, mark, sample, step, oom, error, stopped, result.

SIGTERM asks for a clean stop: the run unwinds, frees its memory and reports a result
with status "stopped" (the parent kills it if that takes longer than its grace period).

Calibration: a spec key "trace" (a file path) records the caching allocator's history
(torch.cuda.memory._record_memory_history, no stack frames) from the context to the end of
the first step (or of step "trace_steps", counting the warm-up) and writes it there as gzipped JSON: every alloc / free / segment event with
its address and size, and the time of each mark.

Test-only: a spec key "fault" (hang, hang-hard, segfault, exit, garbage, oom, error)
injects that fault at the first step, so the tests can prove how the parent ends each.

Peak device memory is what nvidia-smi shows for the process: NVML's device "used" minus
the baseline read before CUDA starts (the CUDA context, cuBLAS workspaces and managed
memory are outside torch's counters, so torch.cuda.max_memory_reserved alone is short).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

_out_lock = threading.Lock()
_T0 = time.monotonic()
# -- issue 10 hook (multi-GPU helper): a rank of a multi-GPU run tags every event --
_RANK = os.environ.get("CARDFIT_RANK")
_RANK = int(_RANK) if _RANK and _RANK.isdigit() else None
# -- end of issue 10 hook --


def emit(kind: str, **fields) -> None:
    fields["type"] = kind
    fields.setdefault("t", round(time.monotonic() - _T0, 4))
    if _RANK is not None:  # issue 10 hook
        fields.setdefault("rank", _RANK)
    line = json.dumps(fields, separators=(",", ":"), default=str)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except Exception:
            return 0


class DeviceMemory:
    """Device-wide used bytes: NVML when importable, else cudaMemGetInfo."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.index = int(device.split(":")[1]) if self.cuda and ":" in device else 0
        self.handle = None
        self.nvml = None
        self.source = "none"
        if not self.cuda:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = self._nvml_handle(pynvml)
            self.source = "nvml"
        except Exception:
            self.nvml = None
            self.source = "cudaMemGetInfo"

    def _nvml_handle(self, pynvml):
        # CUDA numbers devices fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; NVML by
        # PCI bus. Honour CUDA_VISIBLE_DEVICES (an index or a UUID) before matching.
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            ids = [v.strip() for v in visible.split(",") if v.strip()]
            if self.index < len(ids):
                ident = ids[self.index]
                if ident.startswith("GPU-") or ident.startswith("MIG-"):
                    return pynvml.nvmlDeviceGetHandleByUUID(ident)
                return pynvml.nvmlDeviceGetHandleByIndex(int(ident))
        return pynvml.nvmlDeviceGetHandleByIndex(self.index)

    def used(self) -> int | None:
        if not self.cuda:
            return None
        if self.nvml is not None:
            try:
                return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)
            except Exception:
                return None
        try:
            import torch

            free, total = torch.cuda.mem_get_info(self.index)
            return int(total - free)
        except Exception:
            return None

    def total(self) -> int | None:
        if self.nvml is not None:
            try:
                return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).total)
            except Exception:
                return None
        return None


class Sampler(threading.Thread):
    """Samples device used / torch allocated / reserved / RSS at a fixed rate."""

    def __init__(self, mem: DeviceMemory, hz: float, torch_ready: threading.Event):
        super().__init__(daemon=True, name="cardfit-sampler")
        self.mem = mem
        self.period = 1.0 / max(1.0, min(hz, 200.0))
        self.torch_ready = torch_ready
        self.phase = "init"
        self.stop_event = threading.Event()
        self.peak_used = 0
        self.peak_rss = 0

    def read(self) -> dict:
        used = self.mem.used()
        alloc = reserved = None
        if self.torch_ready.is_set() and self.mem.cuda:
            import torch

            try:
                alloc = torch.cuda.memory_allocated(self.mem.index)
                reserved = torch.cuda.memory_reserved(self.mem.index)
            except Exception:
                pass
        rss = _rss_bytes()
        if used is not None:
            self.peak_used = max(self.peak_used, used)
        self.peak_rss = max(self.peak_rss, rss)
        return {"device_used": used, "allocated": alloc, "reserved": reserved, "rss": rss}

    def run(self) -> None:
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            emit("sample", phase=self.phase, **self.read())
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay < 0:  # fell behind (a long GIL hold): skip, don't burst
                next_t = time.monotonic()
                delay = 0
            self.stop_event.wait(delay)


class Run:
    def __init__(self, spec: dict):
        self.spec = spec
        self.workload = spec.get("workload", {})
        self.device = spec.get("device", "cuda:0")
        self.torch_ready = threading.Event()
        self.mem = DeviceMemory(self.device)
        self.baseline = self.mem.used()
        self.sampler = Sampler(self.mem, float(spec.get("sample_hz", 50)), self.torch_ready)
        self.phase = "init"
        self.marks: list[dict] = []
        self.step_times: list[float] = []
        self.versions: dict = {}
        self.torch = None
        self.peak_reserved = 0
        self.peak_allocated = 0
        self.nontorch_max = 0  # max over marks of (device used - baseline - reserved)

    # ---- bookkeeping ------------------------------------------------------------------
    def set_phase(self, phase: str, **extra) -> None:
        self.phase = phase
        self.sampler.phase = phase
        emit("phase", phase=phase, **extra)

    def mark(self, label: str) -> dict:
        """Synchronous memory reading at a known point, with the torch peaks since the
        previous mark (reset after reading) -- the per-stage figures of the breakdown."""
        rec = {"label": label, "phase": self.phase}
        torch = self.torch
        if torch is not None and self.mem.cuda:
            torch.cuda.synchronize(self.mem.index)
            rec["allocated"] = torch.cuda.memory_allocated(self.mem.index)
            rec["reserved"] = torch.cuda.memory_reserved(self.mem.index)
            rec["max_allocated"] = torch.cuda.max_memory_allocated(self.mem.index)
            rec["max_reserved"] = torch.cuda.max_memory_reserved(self.mem.index)
            self.peak_reserved = max(self.peak_reserved, rec["max_reserved"])
            self.peak_allocated = max(self.peak_allocated, rec["max_allocated"])
            torch.cuda.reset_peak_memory_stats(self.mem.index)
        used = self.mem.used()
        rec["device_used"] = used
        if used is not None and self.baseline is not None and "reserved" in rec:
            self.nontorch_max = max(self.nontorch_max, used - self.baseline - rec["reserved"])
        rec["rss"] = _rss_bytes()
        rec["t_us"] = int(time.time() * 1e6)  # the clock of the allocator history's time_us
        self.marks.append(rec)
        emit("mark", **rec)
        return rec

    # ---- the run ----------------------------------------------------------------------
    def main(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_sigterm)
        fault = self.spec.get("fault")
        emit("hello", pid=os.getpid(), python=sys.version.split()[0], executable=sys.executable,
             device=self.device, baseline_device_used=self.baseline, memory_source=self.mem.source,
             device_total=self.mem.total())
        self.sampler.start()
        status, exit_code = "ok", 0
        error = None
        try:
            self.set_phase("init")
            import torch

            self.torch = torch
            self.versions = _versions()
            if self.mem.cuda:
                if not torch.cuda.is_available():
                    raise RuntimeError("CUDA is not available to torch in this interpreter "
                                       f"({sys.executable}): {_cuda_reason(torch)}")
                torch.cuda.set_device(self.mem.index)
                torch.zeros(1, device=self.device)  # creates the context
                self.versions["gpu"] = torch.cuda.get_device_name(self.mem.index)
            self.torch_ready.set()
            torch.manual_seed(int(self.spec.get("seed", 0)))
            self.mark("context")
            emit("versions", **self.versions)
            if self.spec.get("trace") and self.mem.cuda:
                torch.cuda.memory._record_memory_history(enabled="all", context=None,
                                                         max_entries=4_000_000)

            self.set_phase("build")
            from workload_step import build_and_prepare

            job = build_and_prepare(self.spec, torch, self.device)
            emit("built", builder=job.builder, params=job.params, trainable=job.trainable,
                 notes=job.notes)
            self.mark("weights")

            warmup = int(self.spec.get("warmup", 1))
            steps = int(self.spec.get("steps", 3))
            for i in range(warmup + steps):
                self.set_phase("warmup" if i < warmup else "step", step=i)
                t = time.perf_counter()
                if fault and i == 0:
                    _inject_fault(str(fault), torch)
                job.step(self.mark)
                if self.mem.cuda:
                    torch.cuda.synchronize(self.mem.index)
                dt = time.perf_counter() - t
                if i >= warmup:
                    self.step_times.append(dt)
                emit("step", step=i, seconds=round(dt, 5), tokens=job.tokens_per_step,
                     warmup=i < warmup)
                if i == int(self.spec.get("trace_steps", 1)) - 1 and self.spec.get("trace") and self.mem.cuda:
                    self.mark("traced")
                    self.write_trace(str(self.spec["trace"]))
        except Exception as exc:  # noqa: BLE001 -- the child reports every failure as data
            torch = self.torch
            is_oom = torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError",
                                                                  getattr(torch.cuda, "OutOfMemoryError", ())))
            if not is_oom and "out of memory" in str(exc).lower():
                is_oom = True
            if is_oom:
                status, exit_code = "oom", 3
                emit("oom", phase=self.phase, message=str(exc).splitlines()[0][:500])
            else:
                status, exit_code = "error", 4
                error = f"{type(exc).__name__}: {exc}"
                emit("error", phase=self.phase, message=error[:2000],
                     traceback=traceback.format_exc()[-4000:])
            try:
                self.mark("failure")
            except Exception:
                pass
        except _Stopped:
            status, exit_code = "stopped", 5
            emit("stopped", phase=self.phase)
        if threading.current_thread() is threading.main_thread():
            # A second SIGTERM during cleanup just ends the process.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        allocator = self.allocator_stats()
        peak_reading = self.sampler.read()
        stop_phase = self.phase if status != "ok" else None
        self.set_phase("cleanup")
        self.sampler.stop_event.set()
        self.sampler.join(timeout=2)
        summary = self.summary(status, error)
        summary["phase"] = stop_phase
        if allocator:
            summary["allocator"] = allocator
        job = None
        gc.collect()
        if self.torch is not None and self.mem.cuda:
            try:
                self.torch.cuda.empty_cache()
            except Exception:
                pass
        summary["after_cleanup_device_used"] = self.mem.used()
        summary["peak_rss"] = max(summary["peak_rss"], peak_reading.get("rss") or 0)
        emit("result", **summary)
        return exit_code

    def write_trace(self, path: str) -> None:
        import gzip

        torch = self.torch
        snap = torch.cuda.memory._snapshot()
        torch.cuda.memory._record_memory_history(enabled=None)
        codes = {"alloc": "a", "free_completed": "f",
                 "segment_alloc": "S", "segment_free": "F", "segment_map": "S",
                 "segment_unmap": "F", "oom": "O", "snapshot": "s"}
        traces = snap.get("device_traces") or [[]]
        # free_requested and free_completed coincide on one stream; the completed one is
        # when the block can be reused. Times are deltas (us) from the previous event.
        events, last = [], 0
        for e in traces[self.mem.index if len(traces) > self.mem.index else 0]:
            if e["action"] == "free_requested":
                continue
            t = int(e.get("time_us", 0))
            events.append([codes.get(e["action"], e["action"]), e["addr"], e["size"], t - last])
            last = t
        tmp = path + ".part"  # written whole or not at all
        with gzip.open(tmp, "wt") as fh:
            json.dump({"events": events, "marks": [{"label": m["label"], "t_us": m["t_us"]}
                                                   for m in self.marks]}, fh)
        os.replace(tmp, path)

    def allocator_stats(self) -> dict:
        """The caching allocator's own counters at the end of the run: how far reserved
        outgrew what was asked for (fragmentation), and whether cudaMalloc had to be retried
        after freeing the cache (the card was full). With the spec key "snapshot", also the
        segments and their blocks (sizes and states only), the calibration's ground truth."""
        torch = self.torch
        if torch is None or not self.mem.cuda:
            return {}
        try:
            st = torch.cuda.memory_stats(self.mem.index)
        except Exception:
            return {}
        keys = ("num_alloc_retries", "num_ooms", "segment.all.peak", "segment.large_pool.peak",
                "inactive_split_bytes.all.peak", "requested_bytes.all.peak", "allocated_bytes.all.peak",
                "reserved_bytes.all.peak", "reserved_bytes.small_pool.peak")
        out = {k: st.get(k) for k in keys if k in st}
        if self.spec.get("snapshot"):
            try:
                segs = torch.cuda.memory_snapshot()
                out["segments"] = [[sg["total_size"], [[b["size"], b["state"][0]] for b in sg["blocks"]]]
                                   for sg in segs if sg.get("device", self.mem.index) == self.mem.index]
            except Exception as exc:  # noqa: BLE001 -- a diagnostic, never a failure
                out["segments_error"] = str(exc)[:200]
        return out

    def summary(self, status: str, error: str | None) -> dict:
        base = self.baseline or 0
        peak_used = self.sampler.peak_used
        for m in self.marks:
            if m.get("device_used") is not None:
                peak_used = max(peak_used, m["device_used"])
        sampled = (peak_used - base) if peak_used else None
        # Memory the caching allocator reserves never goes back to the driver before
        # cleanup, so the process's true peak is at least its non-torch part plus the peak
        # reserved -- this catches a spike shorter than the sampling period.
        from_reserved = self.nontorch_max + self.peak_reserved if self.mem.cuda else None
        peak = max(v for v in (sampled, from_reserved, 0) if v is not None)
        times = sorted(self.step_times)
        step_s = times[len(times) // 2] if times else None
        tokens = self.workload_tokens()
        return {
            "status": status,
            "error": error,
            "phase": self.phase if status != "ok" else None,
            "device": self.device,
            "memory_source": self.mem.source,
            "baseline_device_used": self.baseline,
            "peak_device_bytes": peak if self.mem.cuda else None,
            "peak_device_sampled": sampled,
            "peak_reserved": self.peak_reserved,
            "peak_allocated": self.peak_allocated,
            "nontorch_bytes": self.nontorch_max,
            "peak_rss": self.sampler.peak_rss,
            "device_total": self.mem.total(),
            "step_seconds": step_s,
            "tokens_per_second": (tokens / step_s) if (step_s and tokens) else None,
            "marks": self.marks,
            "versions": self.versions,
        }

    def workload_tokens(self) -> int:
        w = self.workload
        b = int(w.get("batch", 1))
        if w.get("task", "infer") == "infer":
            return b * int(w.get("new", 0))
        return b * int(w.get("seq", 0))


class _Stopped(BaseException):
    """Raised in the main thread by SIGTERM: the parent asked for a clean stop."""


def _on_sigterm(signum, frame):
    raise _Stopped()


def _inject_fault(kind: str, torch) -> None:
    """TEST-ONLY fault injection (spec key "fault"); never set by cardfit itself."""
    if kind == "garbage":
        for junk in ("not json at all", "[1, 2, 3]", '{"no_type": 1}', '{"type": 5}', "{broken",
                     "\x00\x01 binary-ish", "x" * 100_000):
            with _out_lock:  # whole lines: the sampler thread writes too
                sys.stdout.write(junk + "\n")
                sys.stdout.flush()
        return
    sys.stderr.write(f"cardfit child: injected fault '{kind}'\n")
    sys.stderr.flush()
    if kind in ("hang", "hang-hard"):
        if kind == "hang-hard":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(3600)
    if kind == "segfault":
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if kind == "exit":
        os._exit(7)
    if kind == "oom":
        cls = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
        raise cls("CUDA out of memory. Tried to allocate 2.00 GiB (injected fault)")
    if kind == "error":
        raise RuntimeError("injected error")
    raise ValueError(f"unknown test fault {kind!r}")


def _cuda_reason(torch) -> str:
    if getattr(torch.version, "cuda", None) is None:
        return f"torch {torch.__version__} is a CPU-only build"
    return "no CUDA device or driver found"


def _versions() -> dict:
    """Installed versions, read from package metadata: importing bitsandbytes or
    transformers only to print a version costs seconds per fit test."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "galore-torch"):
        try:
            out[name.replace("-", "_")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name.replace("-", "_")] = None
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda_runtime"] = torch.version.cuda
    except Exception:
        pass
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: child.py SPEC.json | -\n")
        return 2
    try:
        text = sys.stdin.read() if argv[1] == "-" else open(argv[1], encoding="utf-8").read()
        spec = json.loads(text)
        if not isinstance(spec, dict):
            raise ValueError("the spec is not a JSON object")
    except (OSError, ValueError) as exc:
        emit("error", phase="init", message=f"cannot read the fit-test spec: {exc}")
        emit("result", status="error", error=str(exc), phase="init")
        return 4
    return Run(spec).main()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
