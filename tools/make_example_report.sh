#!/usr/bin/env bash
# Makes the example report in all four formats from a fit test:
#
#   tools/make_example_report.sh RESULT.json [DETECT.json] [OUTDIR]
#
# RESULT.json  a FitTestResult (schema cardfit.fittest/1), e.g. from a real H100 fit test
# DETECT.json  `cardfit detect --json` saved on the machine that ran the test; without it
#              the machine running this script is described (and the test's GPU is the card)
# OUTDIR       default docs/examples
#
# The model is the one the test names (model.id); set MODEL=... to override it (a local
# path on the test machine will not resolve here). PYTHON=... picks the interpreter
# (default: .venv/bin/python of this checkout). The PDF is A4; PAGE_SIZE=Letter for Letter.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
result=$1
detect=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
outdir=${3:-$root/docs/examples}
py=${PYTHON:-$root/.venv/bin/python}
[[ -f "$result" ]] || { echo "make_example_report: no such file: $result" >&2; exit 2; }
[[ -z "$detect" || -f "$detect" ]] || { echo "make_example_report: no such file: $detect" >&2; exit 2; }
mkdir -p "$outdir"

read -r model slug < <("$py" - "$result" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
m = (d.get("model") or {}).get("id") or ""
w = d.get("workload") or {}
name = re.sub(r"[^A-Za-z0-9.]+", "-", m.split("/")[-1]).strip("-").lower() or "model"
gpu = re.sub(r"[^A-Za-z0-9]+", "-", ((d.get("gpu") or {}).get("name") or "gpu")).strip("-").lower()
gpu = gpu.replace("nvidia-", "")
print(m or "-", f"{name}-{w.get('task', 'run')}-{gpu}")
PY
)
model=${MODEL:-$model}
[[ "$model" != "-" ]] || { echo "make_example_report: $result names no model; set MODEL=..." >&2; exit 2; }

base="$outdir/report-$slug"
args=("$model" --with-test "$result")
[[ -n "$detect" ]] && args+=(--machine "$detect")
for ext in html pdf md json; do
  QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen} "$py" -m cardfit report "${args[@]}" \
    --page-size "${PAGE_SIZE:-A4}" --out "$base.$ext"
done
echo "link from the README: docs/examples/$(basename "$base").html (.pdf, .md, .json)"
