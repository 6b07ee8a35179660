"""Turns a fit-test spec into a ready job: the model (Hugging Face's class when
transformers is importable, else cardfit's built-in decoder), adapters, optimizer, and one
``step`` that does what the user's loop does:

- training: forward with labels, backward, ``optimizer.step()``,
  ``zero_grad(set_to_none=True)`` (gradient accumulation repeats forward/backward);
- inference: Hugging Face ``generate`` of ``new`` tokens after a ``prompt``-token prefill.

Standard library and torch only; peft / bitsandbytes / galore_torch when the workload
needs them (a clear error names the missing package)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field


class MissingPackage(RuntimeError):
    pass


def _need(module: str, why: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise MissingPackage(f"{why} needs the '{module}' package in the fit-test interpreter "
                             f"({exc}); install it there or pick another workload") from exc


@dataclass
class Job:
    builder: str
    model: object
    step_fn: object
    tokens_per_step: int
    params: int
    trainable: int
    notes: list = field(default_factory=list)

    def step(self, mark) -> None:
        self.step_fn(mark)


# PEFT target names per wanted projection, first match wins (Llama-style names, then the
# fused layouts of Phi-3, GPT-2 and Falcon).
_TARGETS = {
    "q": ("q_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv"),
    "k": ("k_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv"),
    "v": ("v_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv"),
    "o": ("o_proj", "dense", "out_proj"),
}


def lora_target_modules(model, targets: str):
    if targets == "all":
        return "all-linear"
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    out: list[str] = []
    for letter in ("qkvo" if targets == "qkvo" else "qv"):
        for cand in _TARGETS[letter]:
            if cand in present:
                if cand not in out:
                    out.append(cand)
                break
    if not out:
        raise RuntimeError(f"no attention projections found for LoRA targets '{targets}'")
    return out


def build_and_prepare(spec: dict, torch, device: str) -> Job:
    # -- issue 10 hook (multi-GPU helper): one rank of a multi-GPU run (distributed.py) --
    if spec.get("distributed"):
        from distributed import build_and_prepare_distributed

        return build_and_prepare_distributed(spec, torch, device)
    # -- end of issue 10 hook --
    w = dict(spec.get("workload", {}))
    config = spec["config"]
    task = w.get("task", "infer")
    builder = spec.get("builder", "auto")
    notes: list[str] = []

    if task == "qlora" and w.get("dtype") not in ("nf4", "fp4"):
        w["dtype"] = "nf4"
    if builder in ("auto", "hf"):
        try:
            import transformers  # noqa: F401
        except ImportError:
            if builder == "hf":
                raise MissingPackage("builder 'hf' needs transformers in the fit-test interpreter")
            builder = "builtin"
        else:
            builder = "hf"
    if builder == "hf":
        if w.get("dtype") in ("int8", "nf4", "fp4"):
            _need("bitsandbytes", f"{w['dtype']} weights")
        from hf_build import build_hf

        model, more = build_hf(torch, config, w, device)
    else:
        from builtin_model import build_builtin

        model, more = build_builtin(torch, config, w, device)
    notes += more

    params = sum(p.numel() for p in model.parameters())
    vocab = int(config.get("vocab_size") or config.get("text_config", {}).get("vocab_size"))
    batch = int(w.get("batch", 1))

    if task == "infer":
        model.eval()
        prompt, new = int(w.get("prompt", 512)), int(w.get("new", 64))
        ids = torch.randint(0, vocab, (batch, prompt), device=device)
        mask = torch.ones_like(ids)

        def infer_step(mark):
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                               min_new_tokens=new, do_sample=False, use_cache=True,
                               pad_token_id=0)
            mark("generate")

        return Job(builder, model, infer_step, batch * new, params, 0, notes)

    # ---- training ----------------------------------------------------------------------
    seq = int(w.get("seq", 512))
    accum = int(w.get("grad_accum", 1))
    frozen = int(w.get("frozen_layers", 0))
    if task in ("lora", "qlora"):
        model = _add_lora(torch, model, w, builder, notes)
    elif frozen:
        _freeze_first_layers(model, frozen, notes)
    if w.get("grad_ckpt"):
        if builder == "hf":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing = True
    model.train()

    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    opt = make_optimizer(torch, model, trainable, w, notes)
    amp = w.get("amp", "none") if task == "full" else "none"
    scaler = None
    if amp == "fp16":
        scaler = torch.amp.GradScaler("cuda" if device.startswith("cuda") else "cpu")
    dev_type = "cuda" if device.startswith("cuda") else "cpu"

    def autocast():
        if amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(dev_type, dtype=getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[amp]))

    def train_step(mark):
        for _ in range(accum):
            ids = torch.randint(0, vocab, (batch, seq), device=device)
            with autocast():
                out = model(input_ids=ids, labels=ids)
            loss = out.loss / accum
            mark("forward")
            (scaler.scale(loss) if scaler else loss).backward()
            del out, loss
            mark("backward")
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        mark("optimizer")
        opt.zero_grad(set_to_none=True)

    return Job(builder, model, train_step, batch * seq * accum, params, n_trainable, notes)


def _add_lora(torch, model, w, builder, notes):
    r = int(w.get("lora_r", 16))
    if builder == "hf":
        peft = _need("peft", "LoRA")
        targets = lora_target_modules(model, w.get("lora_targets", "qv"))
        # PEFT's defaults: lora_alpha 8, dropout 0; alpha does not change memory.
        cfg = peft.LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=targets,
                              task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, cfg)
        notes.append(f"PEFT {peft.__version__} LoRA r={r} on {targets}")
        return model
    from builtin_model import add_lora

    add_lora(torch, model, r, w.get("lora_targets", "qv"))
    notes.append(f"built-in LoRA r={r}")
    return model


def _freeze_first_layers(model, k, notes):
    import re

    pat = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")
    n = 0
    for name, p in model.named_parameters():
        m = pat.search("." + name)
        if m and int(m.group(1)) < k:
            p.requires_grad_(False)
            n += p.numel()
    notes.append(f"first {k} layers frozen ({n} parameters)")


def make_optimizer(torch, model, params, w, notes):
    name = w.get("optim", "adamw")
    lr = 1e-5
    if w.get("task") == "galore":
        galore = _need("galore_torch", "GaLore")
        rank = int(w.get("galore_rank", 128))
        proj, rest = [], []
        for mod_name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and "lm_head" not in mod_name and mod.weight.requires_grad:
                proj.append(mod.weight)
        proj_ids = {id(p) for p in proj}
        rest = [p for p in params if id(p) not in proj_ids]
        groups = [{"params": rest}, {"params": proj, "rank": rank, "update_proj_gap": 200,
                                      "scale": 0.25, "proj_type": "std"}]
        cls = galore.GaLoreAdamW8bit if name in ("adamw8bit", "paged-adamw8bit") else galore.GaLoreAdamW
        notes.append(f"{cls.__name__} rank {rank} on {len(proj)} matrices")
        return cls(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if name in ("adamw8bit", "paged-adamw8bit"):
        bnb = _need("bitsandbytes", f"optimizer {name}")
        cls = bnb.optim.PagedAdamW8bit if name.startswith("paged") else bnb.optim.AdamW8bit
        return cls(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adafactor":
        if hasattr(torch.optim, "Adafactor"):
            return torch.optim.Adafactor(params, lr=lr)
        tr = _need("transformers", "Adafactor")
        return tr.optimization.Adafactor(params, lr=lr, relative_step=False, scale_parameter=False)
    if name == "lion":
        try:
            import bitsandbytes as bnb

            return bnb.optim.Lion(params, lr=lr)
        except ImportError:
            from builtin_model import Lion

            return Lion(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")
