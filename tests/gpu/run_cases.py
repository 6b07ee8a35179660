"""Runs GPU measurement cases, each in a fresh fit-test child process (as a user's job
runs), and writes one JSON line per case. Standard library only: it runs on the device
machine, where cardfit's GUI dependencies are absent.

    python tests/gpu/run_cases.py --cases tests/gpu/cases.json --select 0:20 \
        --deadline 500 --out $OUT/measure.jsonl --streams $OUT/streams.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = Path(__file__).resolve().parents[2] / "core" / "fittest" / "child.py"


def run_case(case: dict, python: str, timeout: float) -> tuple[dict, list[str]]:
    spec = {"config": case["config"], "workload": case["workload"], "device": case.get("device", "cuda:0"),
            "steps": case.get("steps", 2), "warmup": case.get("warmup", 1), "sample_hz": 50,
            "builder": case.get("builder", "auto"), **({"snapshot": True} if case.get("snapshot") else {}),
            **({"trace": os.path.join(os.environ.get("TRACE_DIR", "/tmp"), case["id"] + ".json.gz")}
               if case.get("trace") else {}),
            **({"trace_steps": case["trace_steps"]} if case.get("trace_steps") else {})}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        path = f.name
    t0 = time.monotonic()
    lines: list[str] = []
    try:
        proc = subprocess.run([python, str(CHILD), path], capture_output=True, text=True, timeout=timeout)
        lines = proc.stdout.splitlines()
        rc, stderr = proc.returncode, proc.stderr[-3000:]
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        lines = out.splitlines()
        rc, stderr = "timeout", ""
    finally:
        os.unlink(path)
    rec = {"id": case["id"], "model": case["model"], "split": case["split"], "config": case["config"],
           "workload": case["workload"], "rc": rc, "wall_s": round(time.monotonic() - t0, 2)}
    events = []
    for ln in lines:
        try:
            events.append(json.loads(ln))
        except ValueError:
            continue
    for ev in events:
        kind = ev.get("type")
        if kind in ("hello", "versions", "built", "oom", "error"):
            rec[kind] = {k: v for k, v in ev.items() if k != "type"}
        elif kind == "result":
            rec["result"] = {k: v for k, v in ev.items() if k != "type"}
    if "result" not in rec:
        rec["stderr"] = stderr
    return rec, lines


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True)
    ap.add_argument("--select", default=":", help="a:b slice, or comma-separated ids")
    ap.add_argument("--out", required=True)
    ap.add_argument("--streams")
    ap.add_argument("--deadline", type=float, default=540, help="start no case after this many seconds")
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    cases = json.loads(Path(args.cases).read_text())
    if ":" in args.select:
        a, b = args.select.split(":")
        cases = cases[int(a) if a else None:int(b) if b else None]
    else:
        ids = set(args.select.split(","))
        cases = [c for c in cases if c["id"] in ids]
    t0 = time.monotonic()
    done = 0
    with open(args.out, "a") as out, open(args.streams or os.devnull, "a") as streams:
        for case in cases:
            if time.monotonic() - t0 > args.deadline:
                print(f"deadline: {len(cases) - done} cases not run", flush=True)
                break
            rec, lines = run_case(case, args.python, args.timeout)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            if case.get("record"):
                for ln in lines:
                    streams.write(json.dumps({"case": case["id"], "line": ln}) + "\n")
            done += 1
            r = rec.get("result", {})
            peak = r.get("peak_device_bytes")
            print(f"{rec['id']:<60} {r.get('status', rec['rc'])!s:<6} "
                  f"peak {peak / 2**30 if peak else float('nan'):7.2f} GiB  "
                  f"reserved {(r.get('peak_reserved') or 0) / 2**30:7.2f}  {rec['wall_s']:6.1f}s"
                  + (f"  {(rec.get('error') or {}).get('message', '')[:150]}" if r.get('status') == 'error' or 'result' not in rec else ""),
                  flush=True)
            if "result" not in rec:
                print(rec.get("stderr", "")[-1500:], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
