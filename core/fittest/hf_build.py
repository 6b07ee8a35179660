"""Builds the real Hugging Face model class from a config dict, with random weights made
directly on the device (nothing downloaded, no CPU copy of the full model), the way a
user's script would hold it: bf16/fp16/fp32 weights, or bitsandbytes int8 / 4-bit linears
as ``from_pretrained(quantization_config=BitsAndBytesConfig(...))`` makes them.

Runs in the fit-test child: standard library, torch, transformers; bitsandbytes only
for quantized weights. Never loads remote code (no ``trust_remote_code``)."""

from __future__ import annotations

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# The random weights: HF's _init_weights default (normal, std initializer_range = 0.02).
INIT_STD = 0.02
# LLM.int8's outlier threshold: BitsAndBytesConfig(llm_int8_threshold=6.0), its default.
INT8_THRESHOLD = 6.0


def torch_dtype(torch, name: str):
    return getattr(torch, DTYPES[name])


def hf_config(config: dict, attn: str):
    from transformers import AutoConfig

    cfg = dict(config)
    model_type = cfg.pop("model_type")
    for key in ("auto_map", "architectures", "transformers_version", "_name_or_path",
                "quantization_config", "torch_dtype", "dtype"):
        cfg.pop(key, None)
    out = AutoConfig.for_model(model_type, **cfg)
    # sdpa is transformers' own default where the architecture supports it; Gemma 2 (logit
    # soft-capping) falls back to eager by itself, as it does for a user, so only a
    # non-default choice is forced.
    if attn != "sdpa":
        out._attn_implementation = {"eager": "eager", "flash": "flash_attention_2"}[attn]
    return out


def _from_config(cls_auto, cfg, dtype):
    try:
        return cls_auto.from_config(cfg, dtype=dtype)
    except TypeError:  # transformers < 4.56 spells it torch_dtype
        return cls_auto.from_config(cfg, torch_dtype=dtype)


def build_hf(torch, config: dict, workload: dict, device: str):
    """Returns (model, notes)."""
    from transformers import AutoModelForCausalLM

    notes: list[str] = []
    wdtype = workload.get("dtype", "bf16")
    quant = wdtype in ("int8", "nf4", "fp4")
    cfg = hf_config(config, workload.get("attn", "sdpa"))
    if not quant:
        dtype = torch_dtype(torch, wdtype)
        with torch.device(device):
            model = _from_config(AutoModelForCausalLM, cfg, dtype)
        notes.append(f"attention: {model.config._attn_implementation}")
        return model, notes

    # Quantized: build on the meta device, swap every linear but the output head for a
    # bitsandbytes layer whose random weight is made on the device and quantized at once
    # (what transformers' bitsandbytes integration does, layer by layer), then make the
    # remaining tensors (embeddings, norms, head) on the device.
    import bitsandbytes as bnb

    # LLM.int8 runs in fp16 (bitsandbytes' and HF's documented setting); 4-bit computes in bf16.
    rest = torch.float16 if wdtype == "int8" else torch.bfloat16
    with torch.device("meta"):
        model = _from_config(AutoModelForCausalLM, cfg, rest)
    skip = _output_head_names(model)
    n = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear) or name in skip:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _quantized_linear(torch, bnb, module, wdtype, rest, device))
        n += 1
    notes.append(f"{n} linear layers quantized to {wdtype} with bitsandbytes {bnb.__version__}")
    materialize(torch, model, device)
    notes.append(f"attention: {model.config._attn_implementation}")
    model.is_loaded_in_8bit = wdtype == "int8"
    model.is_loaded_in_4bit = wdtype != "int8"
    return model, notes


def _output_head_names(model) -> set[str]:
    names = {"lm_head"}
    try:
        out = model.get_output_embeddings()
        for name, module in model.named_modules():
            if module is out:
                names.add(name)
    except Exception:
        pass
    return names


def _quantized_linear(torch, bnb, lin, wdtype: str, rest, device: str):
    has_bias = lin.bias is not None
    out_f, in_f = lin.out_features, lin.in_features
    if wdtype == "int8":
        new = bnb.nn.Linear8bitLt(in_f, out_f, bias=has_bias, has_fp16_weights=False,
                                  threshold=INT8_THRESHOLD, device="meta")
        # Int8Params quantizes when moved from the CPU to the GPU.
        w = torch.empty(out_f, in_f, dtype=rest, device=device).normal_(0, INIT_STD).cpu()
        new.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False).to(device)
    else:
        # QLoRA's recipe: NF4 (or FP4) with double quantization, uint8 storage.
        new = bnb.nn.Linear4bit(in_f, out_f, bias=has_bias, compute_dtype=rest,
                                compress_statistics=True, quant_type=wdtype,
                                quant_storage=torch.uint8, device="meta")
        w = torch.empty(out_f, in_f, dtype=rest, device=device).normal_(0, INIT_STD)
        p = bnb.nn.Params4bit(w, requires_grad=False, compress_statistics=True,
                              quant_type=wdtype, quant_storage=torch.uint8)
        new.weight = p.to(device)
        del w
    if has_bias:
        new.bias = torch.nn.Parameter(torch.zeros(out_f, dtype=rest, device=device),
                                      requires_grad=False)
    return new


def materialize(torch, model, device: str) -> None:
    """Give every tensor still on the meta device real storage on ``device``: random
    weights, ones for norm scales, positive values for buffers (rotary frequencies).
    Shared (tied) parameters stay shared."""
    done: dict[int, object] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None or not p.is_meta:
                continue
            if id(p) in done:
                module._parameters[name] = done[id(p)]
                continue
            t = torch.empty(p.shape, dtype=p.dtype, device=device)
            if t.is_floating_point():
                if t.dim() == 1:
                    t.fill_(1.0 if name == "weight" else 0.0)
                else:
                    t.normal_(0, INIT_STD)
            else:
                t.zero_()
            new = torch.nn.Parameter(t, requires_grad=p.requires_grad and t.is_floating_point())
            done[id(p)] = new
            module._parameters[name] = new
        for name, b in list(module._buffers.items()):
            if b is not None and b.is_meta:
                t = torch.rand(b.shape, device=device)
                module._buffers[name] = t.to(b.dtype)
