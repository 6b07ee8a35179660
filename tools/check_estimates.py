"""Estimator vs every GPU measurement (H100 round 1, H200 round 2), one line per case (for tuning by eye):
    python tools/check_estimates.py [--split tune|holdout|all] [--breakdown]"""
import argparse
import json
import statistics
import sys
from pathlib import Path

from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.hf_config import spec_from_config

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
ap = argparse.ArgumentParser()
ap.add_argument("--split", default="all")
ap.add_argument("--breakdown", action="store_true")
ap.add_argument("--grep", default="")
a = ap.parse_args()
G = 2 ** 30
rows = []
for f in sorted(DATA.glob("gpu_measure_h*_part*.jsonl")):
    for line in f.read_text().splitlines():
        r = json.loads(line)
        if a.split != "all" and r["split"] != a.split or a.grep not in r["id"]:
            continue
        res = r.get("result") or {}
        spec = spec_from_config(r["config"], source=r["model"], id=r["model"])
        e = estimate(spec, Workload(**r["workload"]))
        meas = res.get("peak_device_bytes")
        if res.get("status") != "ok":
            print(f"{r['id']:<58} {res.get('status')!s:<5} pred {e.total_bytes / G:7.2f} (measured hit {meas / G if meas else 0:.2f})")
            continue
        err = (e.total_bytes - meas) / meas * 100
        alloc = res["peak_allocated"]; resv = res["peak_reserved"]
        comp = {c.key: c.bytes for c in e.components}
        pa = e.total_bytes - comp.get("allocator_reserve", 0) - comp.get("cuda_context", 0)
        rows.append((r["split"], r["workload"]["task"], err))
        print(f"{r['id']:<58} {r['split'][:4]} meas {meas / G:6.2f} pred {e.total_bytes / G:6.2f} {err:+6.1f}%  "
              f"alloc {alloc / G:6.2f} pred {pa / G:6.2f} ({(pa - alloc) / alloc * 100:+5.1f}%) resv-alloc {(resv - alloc) / G:5.2f} pred {comp.get('allocator_reserve', 0) / G:5.2f} ctx {(meas - resv) / 2**20:5.0f}MiB")
        if a.breakdown:
            for c in e.components:
                print(f"      {c.key:<18}{c.bytes / G:8.3f}  {c.formula}")
for split in ("tune", "holdout"):
    xs = [e for s, _, e in rows if s == split]
    if xs:
        ab = sorted(abs(x) for x in xs)
        print(f"{split}: n={len(xs)} median {statistics.median(ab):.1f}% p90 {ab[int(round(0.9 * (len(ab) - 1)))]:.1f}% worst {min(xs):+.1f}%")
