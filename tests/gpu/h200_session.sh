#!/bin/bash
# One device call on the H200 (issues 3, 5, 6, 11), run from the repository root with the
# wheels in .whl (bitsandbytes, galore-torch, platformdirs, gguf) carried:
#   `cardfit detect` there, a fit test through the real CLI (a 1B full fine-tune, its
#   stream kept), the fault cases through the launcher (tests/gpu/faults.py), then the round-2
#   measurements (tests/gpu/cases_h200.json) until the deadline.
set -u
out=${OUT:?OUT must name the folder the results go to}
t0=$SECONDS
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/cardfit   # the repository root is the package
export PYTHONPATH=/tmp/site:/tmp/pkg PYTHONUNBUFFERED=1
log=$out/log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv >"$log" 2>&1
python3 -m cardfit detect --json >"$out/detect_h200.json" 2>>"$log"
python3 -m cardfit detect >>"$log" 2>&1
echo "== fit test via the CLI ($((SECONDS - t0)) s)" >>"$log"
python3 -m cardfit test meta-llama/Llama-3.2-1B --task full --batch 8 --seq 1024 --steps 3 --stream \
  --out "$out/fittest_h200_full-llama-3.2-1b-bf16-adamw-b8-s1024.json" \
  >"$out/stream_h200_full-llama-3.2-1b-bf16-adamw-b8-s1024.jsonl" 2>>"$log"
echo "exit code $?" >>"$log"
echo "== faults ($((SECONDS - t0)) s)" >>"$log"
python3 tests/gpu/faults.py "$out/faults_h200.jsonl" >>"$log" 2>&1
left=$((${DEADLINE:-530} - (SECONDS - t0)))
echo "== round 2 measurements, deadline $((left - 40)) s ($((SECONDS - t0)) s)" >>"$log"
python3 tests/gpu/run_cases.py --cases tests/gpu/cases_h200.json --deadline $((left - 40)) --timeout 120 \
  --out "$out/gpu_measure_h200_part1.jsonl" >>"$log" 2>&1
echo "== done ($((SECONDS - t0)) s)" >>"$log"
