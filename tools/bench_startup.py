"""Start-up benchmark: seconds from process start to the main window's first paint.

Each run starts a fresh ``python -m cardfit gui`` with ``CARDFIT_BENCH_FIRST_PAINT=1``: the
window prints one line at its first paint (and whether torch was imported) and quits. The
time is measured here, from just before the process is spawned to the moment that line
arrives, so it includes the interpreter's own start. One warm-up run (disk cache) is not
counted; the median of the rest is reported.

    .venv/bin/python tools/bench_startup.py [--runs 7] [--platform offscreen]

Settings are kept in a temporary folder (XDG_CONFIG_HOME), so the user's saved session is
neither read nor changed. Without a display the window is drawn offscreen.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 1.5


def one_run(platform: str | None, config_home: str, timeout: float = 60.0) -> tuple[float, dict]:
    env = dict(os.environ, CARDFIT_BENCH_FIRST_PAINT="1", XDG_CONFIG_HOME=config_home)
    if platform:
        env["QT_QPA_PLATFORM"] = platform
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cardfit", "gui"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("cardfit-first-paint "):
                elapsed = time.perf_counter() - t0
                info = json.loads(line.split(" ", 1)[1])
                proc.wait(timeout=timeout)
                return elapsed, info
        err = proc.stderr.read()
        raise SystemExit(f"the window never painted (exit {proc.wait()}): {err.strip()}")
    finally:
        if proc.poll() is None:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--platform", default=None,
                    help="QT_QPA_PLATFORM (default: offscreen when there is no display)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    platform = args.platform
    if platform is None and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                 or os.environ.get("QT_QPA_PLATFORM")) and sys.platform.startswith("linux"):
        platform = "offscreen"
    with tempfile.TemporaryDirectory(prefix="cardfit-bench-") as home:
        one_run(platform, home)  # warm-up: disk cache, .pyc files
        times, torch = [], False
        for _ in range(args.runs):
            t, info = one_run(platform, home)
            times.append(t)
            torch = torch or bool(info.get("torch_imported"))
    med = statistics.median(times)
    result = {"median_s": round(med, 3), "min_s": round(min(times), 3), "max_s": round(max(times), 3),
              "runs": len(times), "platform": platform or os.environ.get("QT_QPA_PLATFORM") or "native",
              "torch_imported": torch, "target_s": TARGET_S, "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"start-up to first paint: median {med:.3f} s over {len(times)} runs "
              f"(min {min(times):.3f}, max {max(times):.3f}; platform {result['platform']}; "
              f"torch imported: {torch}; target < {TARGET_S} s)")
    return 0 if med < TARGET_S and not torch else 1


if __name__ == "__main__":
    sys.exit(main())
