"""Fit-test faults for real on the GPU (issue 11): each case runs through cardfit's own
launcher (core/fittest/launcher.py), as the CLI and the GUI do, and checks afterwards that
the child is gone (no zombie) and that the card's memory is back where it was, through
NVML. One JSON line per case, with the child's whole event stream.

    PYTHONPATH=<dir holding a cardfit link> python tests/gpu/faults.py OUT.jsonl

Cases: the child killed with SIGKILL mid-step; a hang past the time limit (SIGTERM, a clean
stop); a hang that ignores SIGTERM (killed after the grace period); a cancel mid-step; a
real out-of-memory error.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pynvml

from cardfit.core.estimate.workload import Workload
from cardfit.core.fittest.launcher import FitTestRequest, FitTestRun

SMALL = "meta-llama/Llama-3.2-1B"
FULL = Workload(task="full", dtype="bf16", batch=4, seq=1024)


def used(handle) -> int:
    return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)


def settle(handle, before: int, timeout: float = 15.0) -> int:
    """NVML used once the driver has taken the dead process's memory back (it can lag the
    process's exit by a moment)."""
    t0 = time.monotonic()
    now = used(handle)
    while now > before + (64 << 20) and time.monotonic() - t0 < timeout:
        time.sleep(0.2)
        now = used(handle)
    return now


def alive(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2]  # R, S, Z (zombie) ...
    except OSError:
        return "gone"


def case(name: str, request: FitTestRequest, action, handle) -> dict:
    before = used(handle)
    run = FitTestRun(request)
    run.start()
    events: list[dict] = []
    acted = None
    t0 = time.monotonic()
    for ev in run.events():
        if ev.get("type") == "end":
            break
        events.append(ev)
        if acted is None and action is not None and action(run, ev):
            acted = round(time.monotonic() - t0, 3)
    res = run.wait(60)
    after = settle(handle, before)
    pid = run.pid
    rec = {"case": name, "workload": request.workload.to_json(), "fault": request.fault,
           "time_limit_s": request.time_limit_s, "acted_at_s": acted, "wall_s": round(time.monotonic() - t0, 2),
           "nvml_used_before": before, "nvml_used_after": after, "memory_back": after <= before + (64 << 20),
           "child_pid": pid, "child_state_after": alive(pid) if pid else None,
           "result": res.to_json(), "events": events}
    print(f"{name:<12} {res.status:<9} {res.phase!s:<8} back={rec['memory_back']} "
          f"before {before / 2**20:.0f} MiB after {after / 2**20:.0f} MiB child {rec['child_state_after']} "
          f"{rec['wall_s']:.1f}s  {res.message[:120]}", flush=True)
    return rec


def in_step(run, ev) -> bool:
    return ev.get("type") == "phase" and ev.get("phase") == "step"


def kill_child(run, ev) -> bool:
    if in_step(run, ev):
        time.sleep(0.5)
        os.kill(run.pid, signal.SIGKILL)  # what the OOM killer or a driver fault does
        return True
    return False


def cancel(run, ev) -> bool:
    if in_step(run, ev):
        time.sleep(0.5)
        run.cancel()
        return True
    return False


def main() -> int:
    out = sys.argv[1]
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    cases = [
        ("killed", FitTestRequest(SMALL, FULL, steps=50, time_limit_s=120), kill_child),
        ("cancelled", FitTestRequest(SMALL, FULL, steps=50, time_limit_s=120), cancel),
        ("hang", FitTestRequest(SMALL, FULL, steps=2, time_limit_s=25, fault="hang"), None),
        ("hang-hard", FitTestRequest(SMALL, FULL, steps=2, time_limit_s=25, fault="hang-hard"), None),
        # 8.03B params x (4 weights + 4 grads + 8 Adam) = 128 GB before any activation or
        # AdamW's parameter-sized temporary: more than the H200's 141 GB can hold.
        ("oom", FitTestRequest("meta-llama/Llama-3.1-8B",
                               Workload(task="full", dtype="fp32", batch=2, seq=1024),
                               steps=1, time_limit_s=240), None),
    ]
    with open(out, "a") as f:
        for name, req, action in cases:
            try:
                rec = case(name, req, action, handle)
            except Exception as exc:  # noqa: BLE001 -- record and go on to the next case
                rec = {"case": name, "harness_error": f"{type(exc).__name__}: {exc}"}
                print(name, rec["harness_error"], flush=True)
            f.write(json.dumps(rec) + "\n")
            f.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
