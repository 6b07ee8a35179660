#!/usr/bin/env bash
# The longer fuzz run of cardfit's hostile-input tests (README.md, Reliability).
#
#   tools/fuzz_long.sh            # 5000 examples per property, fresh random seeds
#   tools/fuzz_long.sh 50000      # more
#   EXTRA pytest args after the count: tools/fuzz_long.sh 20000 -k gguf
#
# The normal suite runs the same properties with a fixed, derandomized handful of examples
# (tests/fuzzing.py, profile "ci"). Here hypothesis draws new inputs each run and keeps any
# failing one in .hypothesis/ so the next run (and `pytest`) replays it first.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5000}"
shift || true
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
start=$(date +%s)
CARDFIT_FUZZ=long CARDFIT_FUZZ_EXAMPLES="$N" QT_QPA_PLATFORM=offscreen \
  "$PY" -m pytest -q tests/test_fuzz_specs.py tests/test_fuzz_estimate.py tests/test_hostile_cli.py \
  --hypothesis-show-statistics "$@"
echo "fuzz_long: $N examples per property, $(( $(date +%s) - start )) s"
