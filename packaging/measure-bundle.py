"""Measures a built bundle: its size on disk and as a .tar.gz, and its start-up time (the
median of several runs, one warm-up not counted): `cardfit --version`, and from process
start to the main window's first paint (offscreen unless a display is set; the window
prints one line at its first paint when CARDFIT_BENCH_FIRST_PAINT=1, see gui/app.py).

    python packaging/measure-bundle.py dist/cardfit [--runs 7] [--json]

These are the numbers README.md (Install) quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def targz_bytes(folder: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "b.tar.gz"
        with tarfile.open(out, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        return out.stat().st_size


def time_version(exe: Path, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(exe), "--version"], check=True, capture_output=True, env=env, timeout=60)
    return time.perf_counter() - t0


def time_first_paint(exe: Path, env: dict) -> float:
    env = dict(env, CARDFIT_BENCH_FIRST_PAINT="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), "gui"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("cardfit-first-paint "):
                elapsed = time.perf_counter() - t0
                proc.wait(timeout=60)
                return elapsed
        raise SystemExit(f"the window never painted (exit {proc.wait()}): {proc.stderr.read().strip()}")
    finally:
        if proc.poll() is None:
            proc.kill()


def median_of(fn, runs: int) -> float:
    fn()  # warm-up: page cache
    return statistics.median(fn() for _ in range(runs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="the bundle folder (holding the cardfit executable)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    folder = Path(args.bundle).resolve()
    exe = folder / "cardfit"
    if not exe.is_file():
        raise SystemExit(f"{exe}: no such file; build the bundle with packaging/build-bundle.sh")
    with tempfile.TemporaryDirectory(prefix="cardfit-measure-") as home:
        # Fresh settings (the saved session is neither read nor changed).
        env = dict(os.environ, XDG_CONFIG_HOME=home)
        if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or env.get("QT_QPA_PLATFORM")):
            env["QT_QPA_PLATFORM"] = "offscreen"
        version_s = median_of(lambda: time_version(exe, env), args.runs)
        paint_s = median_of(lambda: time_first_paint(exe, env), args.runs)
    result = {"bundle": str(folder), "size_bytes": folder_bytes(folder), "targz_bytes": targz_bytes(folder),
              "files": sum(1 for p in folder.rglob("*") if p.is_file()),
              "version_median_s": round(version_s, 3), "first_paint_median_s": round(paint_s, 3),
              "runs": args.runs, "platform": env.get("QT_QPA_PLATFORM") or "native",
              "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        mib = 1024 * 1024
        print(f"{folder}: {result['size_bytes'] / mib:.0f} MiB in {result['files']} files "
              f"({result['targz_bytes'] / mib:.0f} MiB as .tar.gz); `cardfit --version` "
              f"{version_s:.2f} s, first paint {paint_s:.2f} s (median of {args.runs}, "
              f"{result['platform']}, {result['cpus']} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
