#!/bin/bash
# Device-machine extras (issue 5 and 6): a plain Hugging Face script's peak on three cases
# (to compare with the fit-test runner's), and the host-RAM peak of loading safetensors.
# Usage on the device machine: bash tests/gpu/extras.sh OUTDIR
set -u
out=$1
here=$(dirname "$0")
for id in infer-llama-3.1-8b-bf16-b8-p2048-n128 lora-llama-3.1-8b-r16-qv-b4-s2048 full-qwen3-1.7b-bf16-adamw-b4-s1024; do
  python3 -c "import json,sys; [print(json.dumps(c)) for c in json.load(open('$here/cases.json')) if c['id']=='$id']" > /tmp/case.json
  python3 "$here/plain_hf.py" /tmp/case.json >> "$out/plain_hf.jsonl" 2>>"$out/extras.err"
done
for m in meta-llama/Llama-3.2-1B Qwen/Qwen2.5-7B; do
  d=/tmp/w/$(basename $m); mkdir -p $d
  python3 "$here/load_ram.py" save $d $m >> "$out/load_ram.jsonl" 2>>"$out/extras.err"
  for mode in hf-cuda mmap-cpu read-cpu; do
    python3 "$here/load_ram.py" $mode $d | sed "s|^{|{\"model\": \"$m\", |" >> "$out/load_ram.jsonl" 2>>"$out/extras.err"
  done
  rm -rf $d
done
