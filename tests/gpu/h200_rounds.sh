#!/bin/bash
# One device call on the H200 (issue 6, rounds 4 and later: ROUND=4 by default), from the
# repository root with the wheels in .whl carried: the cases of tests/gpu/cases_h200_r$ROUND.json
# picked by SELECT (a:b, or ids), until the deadline; the traced cases' allocator histories
# packed into traces.tar parts.
set -u
out=${OUT:?OUT must name the folder the results go to}
t0=$SECONDS
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TRACE_DIR=/tmp/traces
mkdir -p $TRACE_DIR
r=${ROUND:-4}
log=$out/log$r.txt
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv >"$log" 2>&1
left=$((${DEADLINE:-560} - (SECONDS - t0)))
python3 tests/gpu/run_cases.py --cases tests/gpu/cases_h200_r$r.json --select "${SELECT:-:}" --deadline $((left - 45)) \
  --timeout 120 --out "$out/gpu_measure_h200_part$r.jsonl" >>"$log" 2>&1
[ -n "$(ls $TRACE_DIR)" ] && tar -C $TRACE_DIR -cf /tmp/traces.tar . 2>>"$log" && split -b 15M /tmp/traces.tar "$out/traces.tar.part-"
echo "== done ($((SECONDS - t0)) s)" >>"$log"
