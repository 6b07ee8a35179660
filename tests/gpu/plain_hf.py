"""A plain Hugging Face script, written as a user would (no cardfit code), for comparing
its peak with the fit-test runner's on the same settings (issue 5). One case per process:

    python tests/gpu/plain_hf.py CASE_JSON   ->  prints one JSON line
CASE_JSON: {"config": {...}, "workload": {...}} as in tests/gpu/cases.json."""

import json
import sys
import threading
import time

import pynvml
import torch
from transformers import AutoConfig, AutoModelForCausalLM

case = json.loads(open(sys.argv[1]).read())
w = case["workload"]
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
base = pynvml.nvmlDeviceGetMemoryInfo(h).used
peak = [base]
stop = False


def poll():
    while not stop:
        peak[0] = max(peak[0], pynvml.nvmlDeviceGetMemoryInfo(h).used)
        time.sleep(0.005)


threading.Thread(target=poll, daemon=True).start()
cfg = dict(case["config"])
mt = cfg.pop("model_type")
for k in ("torch_dtype", "dtype"):
    cfg.pop(k, None)
config = AutoConfig.for_model(mt, **cfg)
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
vocab = config.vocab_size
if w["task"] == "infer":
    ids = torch.randint(0, vocab, (w["batch"], w["prompt"]), device="cuda")
    for _ in range(2):
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=w["new"],
                       min_new_tokens=w["new"], do_sample=False, pad_token_id=0)
else:
    if w["task"] == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=w["lora_r"], target_modules=["q_proj", "v_proj"],
                                                 task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    for _ in range(3):
        ids = torch.randint(0, vocab, (w["batch"], w["seq"]), device="cuda")
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
torch.cuda.synchronize()
time.sleep(0.05)
stop = True
print(json.dumps({"id": case["id"], "plain_peak_device_bytes": peak[0] - base,
                  "plain_max_reserved": torch.cuda.max_memory_reserved(),
                  "plain_max_allocated": torch.cuda.max_memory_allocated()}))
