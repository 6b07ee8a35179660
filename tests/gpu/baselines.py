"""The best-known public GPU-memory estimators, re-computed from their published formulas,
so that cardfit's measured error can be set beside theirs on the same cases (issue 6).

Standard library only: nothing here imports cardfit, torch or the tools themselves. Each
baseline is a function ``f(record) -> int | None`` taking one measured case record (a line
of tests/data/gpu_measure_h100_*.jsonl: ``config`` is the model's config.json dict,
``workload`` the cardfit Workload fields) and returning the tool's predicted peak device
bytes for one GPU, or None where the tool cannot describe the case.

Which cases a tool covers: a tool covers a case when its inputs can describe the method,
the weight precision and the optimizer. Where a tool offers only a nearby setting (its one
"16-bit / mixed" choice for pure bf16 training), we pick the setting a user would pick and
say so below. Settings a tool ignores (gradient checkpointing, eager vs sdpa attention,
LoRA rank) do not drop a case: the tool still gives its figure and is judged on it.

Sources read, with the commit of the copy read:
- Hugging Face Accelerate ``accelerate estimate-memory``: src/accelerate/commands/estimate.py
  and utils/modeling.py (calculate_maximum_sizes, compute_module_sizes), huggingface/accelerate
  @16cb6eb8 (1.15.0.dev0).
- DeepSpeed: deepspeed/runtime/zero/stage_1_and_2.py estimate_zero2_model_states_mem_needs and
  stage3.py estimate_zero3_model_states_mem_needs, microsoft/DeepSpeed @38327e07 (0.16.5).
- gpu_poor: src/App.js (computeModelSize, convertToMBModelSize, getActivationMemory,
  computeInferenceOnlyActivationMemory, getGradOptMemory, getExtraMemory,
  getAllComputedData), RahulSChand/gpu_poor @ad2fc0ef (Dec 2024).
- asmirnov's VRAM calculator (vram.asmirnov.xyz): app/_lib/index.ts (estimateResult,
  calculateActivations, getTotalUsagePerGPU), furiousteabag/vram-calculator @ea7ab041
  (Mar 2024).
- llm-analysis: llm_analysis/analysis.py (LLMAnalysis.inference / .training and the
  get_* memory terms) and config.py (get_model_config_from_hf), cli99/llm-analysis
  @d841e40a (0.2.2).
"""

from __future__ import annotations

import math
from typing import Any, Callable

MiB = 1 << 20

# cardfit Workload defaults (core/estimate/workload.py), for fields a record leaves out.
_WORKLOAD_DEFAULTS: dict[str, Any] = dict(
    task="infer", dtype="bf16", amp="none", optim="adamw", batch=1, seq=2048, prompt=2048,
    new=256, kv_dtype=None, grad_ckpt=False, grad_accum=1, attn="sdpa", lora_r=16,
    lora_targets="qv", galore_rank=128, frozen_layers=0, quant_group_size=128, gpus=1, zero=0,
    fsdp=None, offload="none")
_KV_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


def workload(record: dict) -> dict[str, Any]:
    w = dict(_WORKLOAD_DEFAULTS, **record["workload"])
    if w["task"] == "qlora" and w["dtype"] not in ("nf4", "fp4"):
        w["dtype"] = "nf4"  # as cardfit's Workload does
    return w


def _first(cfg: dict, keys: tuple[str, ...], default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def _multi_gpu(w: dict) -> bool:
    return w["gpus"] > 1 or bool(w["zero"]) or bool(w["fsdp"]) or w["offload"] != "none"


# ---- true parameter counts (what the tools' meta-device / model counts would see) ----------


def param_counts(cfg: dict) -> dict[str, int]:
    """Parameters of ``AutoModelForCausalLM.from_config(cfg)`` by role, following the
    module layout of transformers' modeling_<arch>.py (llama, mistral, qwen2, qwen3, gemma2,
    phi3, olmoe, qwen2_moe, mixtral, gpt2). ``total`` counts a tied lm_head once (as
    ``model.parameters()`` does); ``base`` is the headless ``AutoModel`` (what Accelerate
    builds); ``largest_module`` is the most parameters held directly by one module (what
    DeepSpeed's stage-3 ``model_to_params`` looks for)."""
    mt = cfg.get("model_type", "")
    h = _first(cfg, ("hidden_size", "n_embd", "d_model"))
    n_layers = _first(cfg, ("num_hidden_layers", "n_layer", "num_layers"))
    nh = _first(cfg, ("num_attention_heads", "n_head"))
    vocab = cfg["vocab_size"]
    tied = cfg.get("tie_word_embeddings", mt in ("gpt2", "gemma2"))
    if mt == "gpt2":
        # modeling_gpt2.py: wte, wpe; per block ln_1, c_attn (h->3h, bias), c_proj, ln_2,
        # c_fc (h->4h), mlp c_proj; ln_f; lm_head tied to wte.
        inner = _first(cfg, ("n_inner",), 4 * h)
        npos = _first(cfg, ("n_positions", "max_position_embeddings"))
        layer = 2 * h + (3 * h * h + 3 * h) + (h * h + h) + 2 * h + (h * inner + inner) + (inner * h + h)
        base = vocab * h + npos * h + n_layers * layer + 2 * h
        head = 0 if tied else vocab * h
        return dict(total=base + head, base=base, lm_head=head,
                    largest_module=max(vocab * h, npos * h, 3 * h * h + 3 * h, h * inner + inner))
    nkv = _first(cfg, ("num_key_value_heads",), nh)
    hd = _first(cfg, ("head_dim",), h // nh)
    inter = cfg.get("intermediate_size") or 4 * h
    q, kv = nh * hd, nkv * hd
    attn = h * q + 2 * h * kv + q * h
    if mt in ("qwen2", "qwen2_moe"):
        attn += q + 2 * kv  # q/k/v biases
    if mt == "qwen3":
        attn += 2 * hd  # q_norm, k_norm over one head
    if mt == "olmoe":
        attn += q + kv  # q_norm, k_norm over the whole projection
    experts = _first(cfg, ("num_experts", "num_local_experts"), 0)
    largest = max(vocab * h, h * q, q * h)
    if experts:
        e_inter = cfg.get("moe_intermediate_size") or inter
        mlp = experts * 3 * h * e_inter + h * experts  # experts + router
        largest = max(largest, experts * 3 * h * e_inter)  # one fused experts module (transformers 5)
        shared = cfg.get("shared_expert_intermediate_size") or 0
        if shared:
            mlp += 3 * h * shared + h  # shared expert + its sigmoid gate (modeling_qwen2_moe.py)
    else:
        mlp = 3 * h * inter
        largest = max(largest, h * inter)
    norms = (4 if mt == "gemma2" else 2) * h
    base = vocab * h + n_layers * (attn + mlp + norms) + h
    head = 0 if tied else vocab * h
    return dict(total=base + head, base=base, lm_head=head, largest_module=largest)


# ---- (1) Hugging Face Accelerate: accelerate estimate-memory ---------------------------------

_ACCEL_DIVISOR = {"fp32": 1, "bf16": 2, "fp16": 2, "int8": 4, "nf4": 8, "fp4": 8}


def accelerate_estimate_memory(record: dict) -> int | None:
    """``accelerate estimate-memory``: the model built on the meta device with ``AutoModel``
    in float32 (so no lm_head), its size per dtype (``gather_data``: total / 2 for float16,
    / 4 for int8, / 8 for int4) and, for training, "Training using Adam" =
    max(estimate_training_usage(fp32 size, dtype).values()): 16 bytes/param for float32,
    8 bytes/param for float16 (its mixed-precision branch: fp32 optimizer states).

    Does not model: activations, KV cache, the CUDA context, the lm_head of untied models
    (AutoModel is headless), quantization constants, optimizers other than Adam, LoRA /
    QLoRA / GaLore (its int8 / int4 training is "N/A"). bfloat16 is not one of its dtypes:
    a bf16 run is read from its float16 row (same size). Buffers (rotary inv_freq) are left
    out here: a few KiB."""
    w = workload(record)
    if _multi_gpu(w):
        return None
    fp32_size = 4 * param_counts(record["config"])["base"]
    if w["task"] == "infer":
        div = _ACCEL_DIVISOR.get(w["dtype"])
        return None if div is None else fp32_size // div
    if w["task"] != "full" or w["optim"] != "adamw":
        return None
    if w["dtype"] == "fp32" and w["amp"] == "none":
        # estimate_training_usage "float32": model 1x, gradients 1x, optimizer 2x, step 4x.
        return 4 * fp32_size
    # "float16"/"bfloat16" branch: model fp32, gradients 1.5x, optimizer 2x, step = optimizer.
    return max(fp32_size, fp32_size + fp32_size // 2, 2 * fp32_size)


# ---- (2) DeepSpeed model-state estimators -------------------------------------------------


def deepspeed_zero2_gpu_bytes(total_params: int, total_gpus: int = 1, cpu_offload: bool = False) -> int:
    """estimate_zero2_model_states_mem_needs, per-GPU part: 2 bytes of fp16 params, plus
    18/N (2 fp16 grads + 4 fp32 grads + 4 fp32 params + 8 Adam states) without offload."""
    if cpu_offload:
        return int(2 * total_params)
    return int(2 * total_params + int(18 * total_params / total_gpus))


def deepspeed_zero3_gpu_bytes(total_params: int, largest_layer_params: int, total_gpus: int = 1,
                              cpu_offload: bool = False, cpu_offload_params: bool = False) -> int:
    """estimate_zero3_model_states_mem_needs, per-GPU part: 4 bytes x the largest layer,
    plus 2/N (params on GPU, optimizer offloaded) or 18/N (nothing offloaded)."""
    largest = 4 * largest_layer_params
    if cpu_offload:
        return int(largest) if cpu_offload_params else int(largest + int(2 * total_params / total_gpus))
    return int(largest + int(18 * total_params / total_gpus))


def deepspeed_model_states(record: dict) -> int | None:
    """DeepSpeed's model-state estimators (params, gradients, Adam states per GPU, mixed
    precision). One GPU, ZeRO 0 or 1: the stage-2 formula with 1 GPU (= 20 bytes/param; with
    one GPU ZeRO shards nothing, and DeepSpeed publishes no stage-0/1 estimator). ZeRO-2 /
    FSDP grad-op: stage-2 formula over the GPUs; ZeRO-3 / FSDP full: stage-3 formula;
    ``offload optimizer`` / ``params`` map to its cpu_offload / cpu_offload_params.
    Parameters are counted as ``model_to_params`` does (shared weights once).

    Does not model: activations, logits, the CUDA context, allocator overhead, precision
    (it always assumes fp16/bf16 params with fp32 master weights and fp32 gradient copies),
    optimizers other than Adam, inference, LoRA / QLoRA / GaLore."""
    w = workload(record)
    if w["task"] != "full" or w["optim"] != "adamw":
        return None
    counts = param_counts(record["config"])
    stage = 3 if w["fsdp"] == "full" else 2 if w["fsdp"] == "grad-op" else w["zero"]
    gpus = w["gpus"] if stage else 1
    if stage == 3:
        return deepspeed_zero3_gpu_bytes(counts["total"], counts["largest_module"], gpus,
                                         cpu_offload=w["offload"] != "none",
                                         cpu_offload_params=w["offload"] == "params")
    return deepspeed_zero2_gpu_bytes(counts["total"], gpus, cpu_offload=w["offload"] != "none")


# ---- (3) gpu_poor ---------------------------------------------------------------------------


def _gpu_poor_config(cfg: dict) -> dict[str, int]:
    """getParseConfig: the first key present, else its default."""
    h = _first(cfg, ("hidden_size", "d_model", "n_embd"), 768)
    return dict(vocab=_first(cfg, ("vocab_size",), 32000), hiddenDim=h,
                heads=_first(cfg, ("num_attention_heads", "num_heads", "n_head"), 12),
                interDim=_first(cfg, ("intermediate_size", "n_inner", "d_ff"), 4 * h),
                num_layers=_first(cfg, ("num_layers", "num_hidden_layers", "n_layer"), 12))


def _gpu_poor_extra(c: dict, quant: str, ctx: int) -> float:
    """getExtraMemory (bytes): bitsandbytes' extra memory, scaled by sqrt(ctx / 50)."""
    common = (10 * c["hiddenDim"] + 5 * c["hiddenDim"] + 4 * c["interDim"] + 2 * c["interDim"]) * c["num_layers"]
    root = math.sqrt(ctx / 50) if ctx / 50 > 1.0 else 1.0
    factor = {"bnb_int8": 0.75 * 1.25, "bnb_q4": 1.0, "qlora": 0.75}[quant]
    return factor * common * 50 * root


def gpu_poor(record: dict) -> int | None:
    """gpu_poor (getAllComputedData), "HuggingFace" inference or training, in MiB:
    model size = vocab*h*2 + L*4*h^2 + L*3*inter*h params at 2 bytes (int8: /2, 4-bit: /4,
    QLoRA: /4 - P*2/64; +6 % for any bitsandbytes model); inference adds the KV cache
    (batch * 2*ctx*2*2*h*L bytes), activations batch*(ctx*h*5*2 + ctx^2*heads*2) and a fixed
    650 MiB; training adds getActivationMemory (per layer attention, MLP and norm tensors,
    x0.15 with gradient checkpointing), getGradOptMemory (full: params x 3 x 2 bytes for Adam,
    x 1 x 2 for SGD; LoRA / QLoRA: a fixed L*8*h adapter term) and 650 MiB. Context =
    prompt + tokens to generate (training: sequence + 1, as its UI says).

    Does not model: fp32 anything (its bytes per value is fixed at 2), GQA (K and V are
    counted at full width), tied embeddings, biases, MoE experts (it reads the per-expert
    intermediate_size as the MLP), LoRA rank and targets, optimizers other than Adam and SGD,
    GaLore, eager vs sdpa attention (it always counts ctx^2 scores)."""
    w = workload(record)
    if _multi_gpu(w) or w["dtype"] not in ("bf16", "fp16", "int8", "nf4", "fp4"):
        return None
    c = _gpu_poor_config(record["config"])
    h, n_layers, heads, inter = c["hiddenDim"], c["num_layers"], c["heads"], c["interDim"]
    task = w["task"]
    quant = {"int8": "bnb_int8", "nf4": "bnb_q4", "fp4": "bnb_q4"}.get(w["dtype"], "no_quant")
    typ = {"full": "full_trn", "lora": "lora_trn", "qlora": "qlora"}.get(task)
    if task == "qlora":
        quant = "no_quant"  # its QLoRA is 4-bit by itself: the quant box must say None
    batch = w["batch"]
    # computeModelSize
    p = c["vocab"] * h * 2 + n_layers * 4 * h * h + n_layers * 3 * inter * h
    # convertToMBModelSize
    size = p * 2 / MiB
    extra = 0.06 * size if quant in ("bnb_int8", "bnb_q4") or typ == "qlora" else 0.0
    if quant == "bnb_int8":
        size /= 2
    if quant == "bnb_q4":
        size /= 4
    if typ == "qlora":
        size = size / 4 - p * 2 / (64 * MiB)
    model_mb = size + extra
    overhead = 650
    if task == "infer":
        ctx = w["prompt"] + w["new"]
        kv_mb = batch * (2 * ctx * 2 * 2 * h * n_layers) / MiB
        act_mb = batch * (ctx * h * 5 * 2 + ctx * ctx * heads * 2) / MiB
        total = kv_mb + model_mb + overhead + act_mb
        return math.ceil(total) * MiB
    if typ is None:  # GaLore
        return None
    opt = {"adamw": "adam_opt", "sgd": "sgd_opt"}.get(w["optim"])
    if opt is None or (typ == "full_trn" and quant != "no_quant"):
        return None
    ctx = w["seq"] + 1
    fb = 2  # convertToBytes: always 2
    attn = (ctx * h * 3 * fb + ctx * h * 2 * fb + ctx * ctx * heads * fb + ctx * ctx * heads * 4
            + ctx * ctx * heads * fb + ctx * h * fb * 3)
    ffn = h * ctx * fb * 2 + fb * 5 * ctx * inter + inter * ctx * fb
    norm = ctx * 4 * 2 + ctx * h * fb * 6
    act_mb = (attn + ffn + norm) * n_layers * batch / MiB
    if w["grad_ckpt"]:
        act_mb *= 0.15
    adam = opt == "adam_opt"
    if typ == "qlora":
        grad_opt = n_layers * 8 * h * 0.5 * 4 * (3 if adam else 1) + _gpu_poor_extra(c, "qlora", ctx) * batch
    elif typ == "full_trn":
        grad_opt = p * (3 if adam else 1) * fb
    elif quant == "no_quant":  # LoRA on 16-bit weights
        grad_opt = n_layers * 8 * h * 2 * 4 * (3 * 2 if adam else 2)
    else:  # LoRA on bitsandbytes weights
        grad_opt = n_layers * 8 * h * 2 * 4 * (3 if adam else 1) + _gpu_poor_extra(c, quant, ctx) * batch
    total = model_mb + grad_opt / MiB + act_mb + overhead
    return math.ceil(total) * MiB


# ---- (4) asmirnov's VRAM calculator ------------------------------------------------------------


def asmirnov_vram(record: dict) -> int | None:
    """vram.asmirnov.xyz (estimateResult + getTotalUsagePerGPU, unit MiB): 1000 MiB of CUDA
    kernels; parameters at 4 bytes (full precision), 6 (mixed-precision training: fp32 +
    fp16 copies) or 2 (half-precision inference); output probabilities 4*b*s*V (x2 when
    training); activations per Korthikanti et al. 2022 (attention input, q, k, v, softmax
    output + dropout mask + dropout output at b*heads*s^2, out-projection input, MLP input,
    activation input, down-projection input, dropout masks, two norms), all layers when
    training, one layer at inference; when training, fp32 gradients and fp32 first / second
    moments (Adam; SGD: momentum optional). numParams is the model's total parameter count;
    sequence length = prompt + new tokens at inference.

    Does not model: the KV cache, quantized weights, LoRA / QLoRA / GaLore (README "ToDo"),
    gradient checkpointing, flash / memory-efficient attention (always s^2 scores), pure
    bf16 / fp16 training (its two training precisions are full and mixed: a bf16 run is
    read as mixed), optimizers other than Adam and SGD."""
    w = workload(record)
    if _multi_gpu(w):
        return None
    cfg = record["config"]
    training = w["task"] != "infer"
    if training:
        if w["task"] != "full":
            return None
        if w["optim"] == "adamw":
            moments = 2
        elif w["optim"] == "sgd":
            moments = 0
        elif w["optim"] == "sgd-momentum":
            moments = 1
        else:
            return None
        mixed = not (w["dtype"] == "fp32" and w["amp"] == "none")
        bytes_per_param = 6 if mixed else 4
        act_bytes = 2 if mixed else 4
        seq = w["seq"]
    else:
        if w["dtype"] not in ("fp32", "bf16", "fp16"):
            return None
        moments = 0
        bytes_per_param = act_bytes = 4 if w["dtype"] == "fp32" else 2
        seq = w["prompt"] + w["new"]
    num_params = param_counts(cfg)["total"]
    h = _first(cfg, ("hidden_size", "n_embd", "d_model"))
    heads = _first(cfg, ("num_attention_heads", "n_head"))
    kv_heads = _first(cfg, ("num_key_value_heads",), heads)
    inter = _first(cfg, ("intermediate_size", "n_inner"), 4 * h)
    n_layers = _first(cfg, ("num_hidden_layers", "n_layer", "num_layers"))
    vocab = cfg["vocab_size"]
    b, s, head_dim = w["batch"], seq, h / heads
    # calculateActivations
    attention = (act_bytes * b * s * h                      # attention input
                 + act_bytes * b * s * head_dim * heads     # q
                 + act_bytes * b * s * head_dim * kv_heads  # k
                 + act_bytes * b * heads * s * s            # softmax output
                 + act_bytes * b * s * head_dim * kv_heads  # v
                 + act_bytes * b * s * heads * head_dim     # out-projection input
                 + 1 * b * heads * s * s                    # softmax dropout mask
                 + act_bytes * b * heads * s * s            # dropout output
                 + 1 * b * s * h)                           # attention dropout mask
    mlp = act_bytes * b * s * h + 2 * act_bytes * b * s * inter + 1 * b * s * h
    norms = act_bytes * b * s * h * 2
    activations = (attention + mlp + norms) * (n_layers if training else 1)
    outputs = 4 * b * s * vocab * (2 if training else 1)
    parts = [1000 * MiB, bytes_per_param * num_params, outputs, activations]
    if training:
        parts += [4 * num_params] * (1 + moments)  # gradients, first / second moments
    # Each figure is rounded to whole MiB (toFixed(0): halves away from zero), the total
    # is their sum.
    return sum(math.floor(x / MiB + 0.5) for x in parts) * MiB


# ---- (5) llm-analysis ---------------------------------------------------------------------------


def _llm_analysis_model(cfg: dict) -> dict[str, Any]:
    """config.get_model_config_from_hf + ModelConfig.__post_init__: gated MLP only when
    intermediate_size / hidden == 3.5; experts from moe_num_experts / num_local_experts."""
    h = _first(cfg, ("hidden_size", "n_embd", "d_model"))
    n_head = _first(cfg, ("num_attention_heads", "n_head", "n_heads"))
    ffn = _first(cfg, ("ffn_embed_dim", "intermediate_size"))
    if ffn:
        ratio = ffn / h
        gated = ratio == 3.5
    else:
        ffn, ratio, gated = 4 * h, 4, False
    return dict(
        h=h, n_head=n_head, L=_first(cfg, ("num_hidden_layers", "n_layer", "n_layers")),
        vocab=cfg["vocab_size"], kv=_first(cfg, ("num_key_value_heads",), n_head),
        ffn=ffn, ratio=ratio, gated=gated,
        max_seq=_first(cfg, ("max_position_embeddings", "n_positions")),
        experts=_first(cfg, ("moe_num_experts", "num_local_experts"), 0) or _mapped_experts(cfg) or 1,
        top_k=1)  # moe_top_k is not read from the HF config: its default 1


def _mapped_experts(cfg: dict) -> int:
    """transformers' OlmoeConfig maps num_local_experts -> num_experts (attribute_map), so
    hasattr(config, "num_local_experts") finds OLMoE's experts; Qwen2MoeConfig has no such
    map, so llm-analysis reads Qwen MoE as dense (transformers 5.x, checked against 5.24)."""
    return (cfg.get("num_experts") or 0) if cfg.get("model_type") == "olmoe" else 0


def _llm_analysis_params(m: dict) -> dict[str, float]:
    h = m["h"]
    attn = 2 * h * h + 2 * h * (h * m["kv"] / m["n_head"])
    mlp = (3 if m["gated"] else 2) * h * m["ffn"] * m["experts"]
    router = h * m["experts"] if m["experts"] > 1 else 0
    ln = 2 * h
    # get_num_params_embedding(shared_embedding=True): the input embedding only.
    return dict(attn=attn, mlp=mlp, router=router, ln=ln, layer=attn + mlp + router + ln,
                embed=m["vocab"] * h, last_ln=h)


def _llm_analysis_flops_ok(m: dict, b: int, s: int) -> bool:
    """get_num_flops_fwd_total asserts, for multi-head (not grouped) attention, that its FLOP
    count is within 1 % of 24*b*L*s*h^2*(1 + s/(6h) + V/(12*L*h)); models whose MLP is not
    4h wide (or is gated) fail it, and inference() / training() stop with AssertionError."""
    if m["kv"] != m["n_head"]:
        return True
    h, n_layers, vocab = m["h"], m["L"], m["vocab"]
    attn = 4 * b * s * h * h + 4 * b * s * h * h + 4 * b * s * s * h
    mlp = (6 if m["gated"] else 4) * b * s * h * h * m["ratio"]
    total = (attn + mlp) * n_layers + 2 * b * s * h * vocab
    target = 24 * b * n_layers * s * h * h * (1 + s / (6 * h) + vocab / (12 * n_layers * h))
    return abs(total - target) / target < 0.01


def _llm_analysis_attn_act(m, b, s, bpa, inference, flash, recompute_full):
    h, n_head = m["h"], m["n_head"]
    if recompute_full:
        return 0.0
    if flash:
        compute = (2 * s * b * h + 4 * n_head * s * b) * bpa
    else:
        compute = 2 * n_head * s * s * b * bpa
    if inference:
        return max(3 * bpa * s * b * h, compute)
    return (s * b * h + 4 * s * b * h) * bpa + compute + s * b * h  # + attention dropout mask


def _llm_analysis_mlp_act(m, b, s, bpa, inference):
    h = m["h"]
    if inference:
        return max(bpa, bpa * m["ratio"]) * s * b * h * m["top_k"]
    if m["experts"] > 1:
        act = 2 * bpa * s * b * h + bpa * s * b * h * m["top_k"] + bpa * b * s * m["top_k"]
        act += bpa * s * b * h * m["top_k"]
    else:
        act = bpa * s * b * h
    return act + 2 * bpa * m["ratio"] * s * b * h * m["top_k"]


def _llm_analysis_layer_act(m, b, s, bpa, ln_bytes, inference, flash=True, recompute_full=False):
    """get_activation_memory_per_layer (tp = sp = 1)."""
    if recompute_full:
        return s * b * m["h"] * bpa
    attn = _llm_analysis_attn_act(m, b, s, bpa, inference, flash, False)
    mlp = _llm_analysis_mlp_act(m, b, s, bpa, inference)
    ln = s * b * m["h"] * ln_bytes
    return max(attn, mlp, ln) if inference else attn + mlp + 2 * ln


def llm_analysis(record: dict) -> int | None:
    """llm-analysis (cli99), one GPU, no parallelism.

    Inference (``infer``, dtype config w16a16e16 / w8a16e16 / w4a16e16, layernorm 2 bytes):
    weights + KV cache (2*b*(prompt+new)*head_dim*kv_heads*2 bytes per layer, head_dim =
    h/heads) + the larger of the prefill and decode activation figures; llm-analysis reports
    these terms and no total, so the peak here is their sum.
    Training (``train``): its ``estimated_peak_memory_per_gpu`` = optimizer states (master
    weights + states) + weights + max(activations, gradients) + max(2 layers of prefetched
    weights, logits gradient). Weights are 16-bit (its dtype configs have no 32-bit
    weights); master_weights_dtype_bytes / other_op_bytes describe the run: fp32 master
    (fp32 + amp) or bf16 "master" (pure bf16), Adam 2 states, Lion / SGD-momentum 1, SGD 0,
    8-bit Adam 2 bytes; gradient checkpointing = full recomputation; sdpa = flash_attn.

    No answer (None) where llm-analysis itself stops: sequence longer than the config's
    max_position_embeddings, or multi-head-attention models failing its FLOPs assertion
    (MLP not 4h wide: Phi-3, Llama-2, OLMoE, Qwen MoE).

    Does not model: the CUDA context and allocator, the lm_head of untied models (it
    counts the embedding once), biases and norms' exact shapes, head_dim != h/heads
    (Gemma 2, Qwen3), gated MLPs unless intermediate/hidden is exactly 3.5, the experts of Qwen MoE (read as
    dense) and top-k routing (k = 1 always), fp32 weights, quantization
    constants, Adafactor, LoRA / QLoRA / GaLore."""
    w = workload(record)
    if _multi_gpu(w):
        return None
    m = _llm_analysis_model(record["config"])
    p = _llm_analysis_params(m)
    n_layers, b, h, vocab = m["L"], w["batch"], m["h"], m["vocab"]
    if w["task"] == "infer":
        bits = {"bf16": 16, "fp16": 16, "int8": 8, "nf4": 4, "fp4": 4}.get(w["dtype"])
        if bits is None:
            return None
        s, new = w["prompt"], w["new"]
        if m["max_seq"] is not None and s > m["max_seq"]:
            return None  # inference() asserts seq_len <= max_seq_len
        if not (_llm_analysis_flops_ok(m, b, s) and _llm_analysis_flops_ok(m, b, 1)):
            return None
        bpa, ln_bytes = 2, 2
        weights = p["embed"] * 16 / 8 + n_layers * (p["attn"] + p["mlp"] + p["router"] + p["ln"]) * bits / 8 \
            + p["last_ln"] * bits / 8
        prefill = max(_llm_analysis_layer_act(m, b, s, bpa, ln_bytes, True), vocab * b * s * bpa)
        decode = max(_llm_analysis_layer_act(m, b, 1, bpa, ln_bytes, True), vocab * b * 1 * bpa)
        kv_bytes = _KV_BYTES[w["kv_dtype"]] if w["kv_dtype"] else bpa
        kv = 2 * b * (s + new) * (h / m["n_head"]) * m["kv"] * kv_bytes * n_layers
        return int(weights + kv + max(prefill, decode))
    if w["task"] != "full" or w["dtype"] not in ("fp32", "bf16", "fp16"):
        return None
    if w["dtype"] == "fp32" and w["amp"] == "none":
        return None  # no 32-bit weight dtype config
    master = 4 if w["dtype"] == "fp32" else 2
    state = master
    other = {"adamw": 2 * state, "lion": state, "sgd-momentum": state, "sgd": 0,
             "adamw8bit": 2, "paged-adamw8bit": 2}.get(w["optim"])
    if other is None:
        return None
    s = w["seq"]
    if m["max_seq"] is not None and s > m["max_seq"]:
        return None  # training() asserts seq_len <= max_seq_len
    if not _llm_analysis_flops_ok(m, b, s):
        return None
    bpa, ln_bytes = 2, 4
    n_params = n_layers * p["layer"] + p["embed"] + p["last_ln"]
    weights = n_params * 2
    opt_states = (other + master) * n_params
    grads = master * n_params
    act = n_layers * _llm_analysis_layer_act(m, b, s, bpa, ln_bytes, False, flash=w["attn"] != "eager",
                                             recompute_full=w["grad_ckpt"])
    act += h * b * s * bpa + vocab * b * s * bpa + s * b * h * ln_bytes  # input, output emb, final norm
    prefetch = 2 * p["layer"] * 2  # (fwd_prefetch + bwd_prefetch) x one layer's 16-bit weights
    loss_bwd = vocab * b * s * bpa
    return int(opt_states + weights + max(act, grads) + max(prefetch, loss_bwd))


# name shown in the table -> function
BASELINES: dict[str, Callable[[dict], int | None]] = {
    "Accelerate estimate-memory": accelerate_estimate_memory,
    "DeepSpeed model states": deepspeed_model_states,
    "gpu_poor": gpu_poor,
    "asmirnov VRAM calculator": asmirnov_vram,
    "llm-analysis": llm_analysis,
}

# One line per tool for the table's notes: what it leaves out.
NOT_MODELED: dict[str, str] = {
    "Accelerate estimate-memory": "weights only (headless AutoModel, no lm_head); training = 4x the 16-bit size "
                                  "(Adam, 16 B/param in fp32); no activations, KV cache, CUDA context; "
                                  "no LoRA/QLoRA/GaLore or non-Adam optimizers",
    "DeepSpeed model states": "params + grads + Adam states only (20 B/param on one GPU, mixed precision "
                              "assumed); no activations, logits, CUDA context; training with Adam only",
    "gpu_poor": "16-bit only; no GQA (full-width KV), no MoE experts, no LoRA rank/targets; fixed 650 MiB "
                "overhead; Adam or SGD only; no GaLore",
    "asmirnov VRAM calculator": "no KV cache, no quantization, no LoRA/QLoRA/GaLore, no gradient checkpointing, "
                                "always s^2 attention scores; training precisions full or mixed only",
    "llm-analysis": "no CUDA context; embedding counted once (no untied lm_head); head_dim = h/heads; MoE top-k = 1, Qwen MoE "
                    "read as dense; no fp32 weights, Adafactor, LoRA/QLoRA/GaLore",
}
