#!/bin/bash
# One device call on the H200 (issue 6, round 3), from the repository root with the wheels in
# .whl carried: the host-RAM peak of loading a sharded model (Qwen2.5-3B, two safetensors
# shards) three ways, then tests/gpu/cases_h200_r3.json: the traced cases (their allocator
# histories packed into traces.tar) and the new measurements, until the deadline.
set -u
out=${OUT:?OUT must name the folder the results go to}
t0=$SECONDS
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TRACE_DIR=/tmp/traces
mkdir -p $TRACE_DIR
log=$out/log3.txt
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv >"$log" 2>&1
if [ -z "${SKIP_LOAD:-}" ]; then
m=Qwen/Qwen2.5-3B; d=/tmp/w/Qwen2.5-3B; mkdir -p $d
python3 tests/gpu/load_ram.py save $d $m >>"$out/load_ram.jsonl" 2>>"$log"
for mode in hf-cuda mmap-cpu read-cpu; do
  python3 tests/gpu/load_ram.py $mode $d | sed "s|^{|{\"model\": \"$m\", |" >>"$out/load_ram.jsonl" 2>>"$log"
done
rm -rf $d
echo "== load RAM done ($((SECONDS - t0)) s)" >>"$log"
fi
left=$((${DEADLINE:-560} - (SECONDS - t0)))
python3 tests/gpu/run_cases.py --cases tests/gpu/cases_h200_r3.json --select "${SELECT:-:}" --deadline $((left - 45)) \
  --timeout 110 --out "$out/gpu_measure_h200_part3.jsonl" >>"$log" 2>&1
[ -n "$(ls $TRACE_DIR)" ] && tar -C $TRACE_DIR -cf /tmp/traces.tar . 2>>"$log" && split -b 15M /tmp/traces.tar "$out/traces.tar.part-"
echo "== done ($((SECONDS - t0)) s)" >>"$log"
