"""Host RAM peak of loading a model from safetensors (issue 6), one process per case:

    python tests/gpu/load_ram.py save  DIR MODEL_ID      # write random bf16 weights (sharded 5GB)
    python tests/gpu/load_ram.py MODE DIR                # MODE: hf-cuda | mmap-cpu | read-cpu

hf-cuda: transformers from_pretrained(device_map="cuda") as users load; mmap-cpu:
safetensors.torch.load_file (memory-mapped); read-cpu: safetensors.torch.load of the whole
file read into memory (no mmap). Prints one JSON line with VmHWM (peak RSS) and the file
bytes."""

import glob
import json
import os
import sys


def vm_hwm() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


mode, d = sys.argv[1], sys.argv[2]
if mode == "save":
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sys.path.insert(0, os.path.dirname(__file__))
    from calib_models import MODELS
    from cases_round2 import CATALOG

    cfg = dict(MODELS.get(sys.argv[3]) or CATALOG[sys.argv[3]])
    mt = cfg.pop("model_type")
    for k in ("torch_dtype", "dtype", "architectures", "transformers_version", "_name_or_path"):
        cfg.pop(k, None)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(mt, **cfg), dtype=torch.bfloat16)
    model.save_pretrained(d, max_shard_size="5GB")
    print(json.dumps({"saved": d, "files": sorted(os.listdir(d))}))
    sys.exit(0)

files = sorted(glob.glob(os.path.join(d, "*.safetensors")))
size = sum(os.path.getsize(f) for f in files)
largest = max(os.path.getsize(f) for f in files)
base = vm_hwm()
if mode == "hf-cuda":
    import torch
    from transformers import AutoModelForCausalLM

    base = vm_hwm()
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda")
elif mode == "mmap-cpu":
    import torch
    from safetensors.torch import load_file

    base = vm_hwm()
    tensors = [load_file(f) for f in files]
    touched = sum(float(t.view(-1)[0]) for sd in tensors for t in sd.values())
elif mode == "read-cpu":
    import torch
    from safetensors.torch import load

    base = vm_hwm()
    tensors = []
    for f in files:
        with open(f, "rb") as fh:
            tensors.append(load(fh.read()))
print(json.dumps({"mode": mode, "dir": d, "file_bytes": size, "largest_file": largest,
                  "rss_before": base, "peak_rss": vm_hwm()}))
