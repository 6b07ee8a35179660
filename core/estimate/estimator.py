"""The memory estimator: peak device memory (per GPU, CUDA context included: what
nvidia-smi shows for the process) and host RAM of a model under a workload.

Each term is a function of the model's shapes with the source of its formula. The model
of what a training step holds follows the tensors autograd saves in Hugging Face's
``modeling_llama.py`` family (RMSNorm in fp32, rotary q/k, ``sdpa_attention_forward``,
SwiGLU MLP) and ``loss_utils.ForCausalLMLoss`` (logits upcast to fp32), checked tensor by
tensor against ``torch.cuda.memory_allocated`` at the marks of real H100 runs
(tests/data/gpu_measure_h100_*.jsonl). The few coefficients that are measured rather than
derived live in ``coefficients.py`` with the runs they come from.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardfit.core.estimate import coefficients as K
from cardfit.core.estimate.generate_replay import SUPPORTED_TYPES, GeneratePlan, generate_reserve
from cardfit.core.estimate.int8_outliers import outlier_columns
from cardfit.core.estimate.result import Component, Estimate
from cardfit.core.estimate.step_replay import MAX_REPLAY_LAYERS, Param, StepPlan, fragmentation
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.core.units import MiB

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
# Bits per weight of the 4-bit formats, quantization constants included:
# NF4/FP4 with double quantization store 4 bits + 8-bit absmax per 64 weights, the absmax
# themselves quantized with an fp32 constant per 256 blocks: 8/64 + 32/(64*256) = 0.127
# extra bits (Dettmers et al. 2023, QLoRA, section 3 "Double Quantization").
NF4_BITS = 4.0
NF4_DQ_EXTRA_BITS = 8 / 64 + 32 / (64 * 256)
# GGUF block formats: bits per weight incl. scales (ggml-common.h block layouts).
GGUF_BITS = {"q8_0": 8.5, "q6_k": 6.5625, "q5_k": 5.5, "q5_k_m": 5.5, "q4_k": 4.5, "q4_k_m": 4.5,
             "q4_0": 4.5, "q3_k": 3.4375, "q2_k": 2.625, "f16": 16.0, "bf16": 16.0, "f32": 32.0}


def _cached(spec: ModelSpec, key: str, make):
    """Per-spec memo of shape facts: the fit matrix asks the same spec for many workloads.
    (The spec is frozen; the memo lives beside its fields, outside eq/hash/asdict.)"""
    memo = spec.__dict__.get("_estimator_memo")
    if memo is None:
        memo = {}
        object.__setattr__(spec, "_estimator_memo", memo)
    if key not in memo:
        memo[key] = make()
    return memo[key]


def _counts(spec: ModelSpec):
    return _cached(spec, "counts", spec.param_counts)


def _layer_groups(spec: ModelSpec) -> list[tuple[int, list]]:
    """(number of layers, their linears): dense layers first (DeepSeek), then the rest."""
    def make():
        dense = spec.first_dense_layers if spec.is_moe else 0
        groups = []
        if dense:
            groups.append((dense, spec.layer_linears(0)))
        groups.append((spec.num_layers - dense, spec.layer_linears(spec.num_layers - 1)))
        return [(n, ls) for n, ls in groups if n > 0]
    return _cached(spec, "layers", make)


def _fmt_n(n: float) -> str:
    for unit, size in (("e9", 1e9), ("e6", 1e6), ("e3", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


@dataclass(frozen=True)
class _Shapes:
    """The per-token widths the activation terms need."""

    h: int  # hidden
    q: int  # query width (heads x head_dim)
    kv: int  # key width per token as cached / fed to attention
    vd: int  # value width
    inter: int  # MLP width one token passes through (MoE: routed experts x width + shared)
    layers: int
    vocab: int
    heads: int

    @classmethod
    def of(cls, spec: ModelSpec) -> "_Shapes":
        if spec.kv_lora_rank:
            q = spec.num_heads * (spec.qk_nope_head_dim + spec.qk_rope_head_dim)
        else:
            q = spec.num_heads * spec.head_dim
        if spec.is_moe:
            inter = spec.experts_per_token * spec.moe_intermediate_size + spec.shared_expert_intermediate_size
            if spec.first_dense_layers:
                # DeepSeek: a few leading dense layers; weight them in by count.
                inter = (spec.first_dense_layers * spec.intermediate_size
                         + spec.moe_layers() * inter) // max(1, spec.num_layers)
        else:
            inter = spec.intermediate_size
        return cls(h=spec.hidden_size, q=q, kv=spec.kv_dim, vd=spec.v_dim, inter=inter,
                   layers=spec.num_layers, vocab=spec.vocab_size, heads=spec.num_heads)


def weight_bytes(spec: ModelSpec, w: Workload) -> tuple[list[Component], int]:
    """Weights (and quantization constants) as loaded. Returns (components, linear params)."""
    pc = _counts(spec)
    scale = pc.total / pc.derived_total if pc.derived_total else 1.0  # exact counts from headers
    linear = int(pc.linear * scale)
    rest = pc.total - linear
    d = w.dtype
    comps: list[Component] = []
    if d in ("fp32", "bf16", "fp16"):
        b = BYTES[d]
        comps.append(Component("weights", int(pc.total * b), f"{_fmt_n(pc.total)} params x {b} B ({d})",
                               "bytes per parameter of the dtype"))
        return comps, linear
    rest_b = 2  # embeddings, norms and the output head stay in 16-bit
    if d == "int8":
        # LLM.int8: int8 weight + one fp32 scale per output row (bitsandbytes Int8Params.SCB).
        comps.append(Component("weights", linear + rest * rest_b,
                               f"{_fmt_n(linear)} linear params x 1 B (int8) + {_fmt_n(rest)} others x 2 B",
                               "Dettmers et al. 2022, LLM.int8(); bitsandbytes nn/modules.py Int8Params"))
        rows = sum(n * sum(s.out_features * s.count for s in ls) for n, ls in _layer_groups(spec))
        comps.append(Component("quant_constants", rows * 4, f"{_fmt_n(rows)} output rows x 4 B fp32 scale",
                               "bitsandbytes Int8Params.SCB"))
        return comps, linear
    if d in ("nf4", "fp4"):
        comps.append(Component("weights", int(linear * NF4_BITS / 8) + rest * rest_b,
                               f"{_fmt_n(linear)} linear params x 0.5 B ({d}) + {_fmt_n(rest)} others x 2 B (bf16)",
                               "Dettmers et al. 2023, QLoRA; bitsandbytes Params4bit"))
        comps.append(Component("quant_constants", int(linear * NF4_DQ_EXTRA_BITS / 8),
                               f"{_fmt_n(linear)} x {NF4_DQ_EXTRA_BITS:.3f} bits (double-quantized absmax)",
                               "QLoRA section 3, double quantization: 0.127 bits/param"))
        return comps, linear
    if d in ("gptq", "awq"):
        g = w.quant_group_size
        # 4-bit packed weights + per group an fp16 scale and a 4-bit zero point
        # (AutoGPTQ / AutoAWQ packing: qweight int32, scales fp16, qzeros int32 packed).
        comps.append(Component("weights", int(linear * 0.5) + rest * rest_b,
                               f"{_fmt_n(linear)} linear params x 0.5 B ({d}) + {_fmt_n(rest)} others x 2 B",
                               "Frantar et al. 2022 (GPTQ); Lin et al. 2023 (AWQ)"))
        comps.append(Component("quant_constants", int(linear / g * (2 + 0.5)),
                               f"{_fmt_n(linear)} / group {g} x (2 B scale + 0.5 B zero)",
                               "AutoGPTQ QuantLinear packing"))
        return comps, linear
    if d == "gguf":
        if spec.gguf_file_bytes:
            comps.append(Component("weights", spec.gguf_file_bytes, "tensor bytes in the GGUF file",
                                   "GGUF header tensor infos"))
        else:
            comps.append(Component("weights", int(pc.total * GGUF_BITS["q4_k_m"] / 8),
                                   f"{_fmt_n(pc.total)} params x 4.5 bits (Q4_K_M)", "ggml-common.h block_q4_K"))
        return comps, linear
    raise ValueError(d)


def _context(w: Workload) -> Component:
    ctx = K.CUDA_CONTEXT_TRAIN if w.training else K.CUDA_CONTEXT_INFER
    parts = ["measured NVML used minus torch reserved, H100, torch 2.11"]
    if w.dtype == "int8":
        ctx += K.CUDA_CONTEXT_INT8_EXTRA
    if w.task == "galore":
        ctx += K.CUDA_CONTEXT_SOLVER_EXTRA
    return Component("cuda_context", ctx, f"{ctx / MiB:.0f} MiB", "; ".join(parts))


# ---- inference ----------------------------------------------------------------------------

def kv_cache_bytes(spec: ModelSpec, w: Workload, tokens: int | None = None) -> int:
    """2 (K and V) x layers x kv width x tokens x batch x bytes: Hugging Face's
    DynamicCache keeps every layer's keys and values for all tokens (cache_utils.py);
    sliding-window layers of Gemma 2/3 keep at most the window."""
    s = _Shapes.of(spec)
    tokens = w.prompt + w.new if tokens is None else tokens
    b = BYTES[w.kv_dtype or _act_dtype(w)]
    per_token_layer = (s.kv + s.vd) * b
    sliding = 0
    if spec.sliding_window and tokens > spec.sliding_window:
        # Sliding-window layers keep only the last `sliding_window` tokens
        # (cache_utils.DynamicSlidingWindowLayer); the rest keep everything.
        sliding = s.layers if spec.sliding_window_layers is None else spec.sliding_window_layers
    total_tok = sliding * spec.sliding_window + (s.layers - sliding) * tokens if sliding else s.layers * tokens
    return int(w.batch * total_tok * per_token_layer)


def _act_dtype(w: Workload) -> str:
    if w.dtype == "int8":
        return "fp16"  # LLM.int8 runs its non-int8 tensors in fp16
    return w.compute_dtype


def _math_sdpa(spec: ModelSpec, w: Workload, c: int) -> bool:
    """True when scaled_dot_product_attention falls back to its math kernel, which
    materialises the score matrix: fp32 with grouped-query attention (the flash kernel has
    no fp32, the memory-efficient one no enable_gqa; transformers
    integrations/sdpa_attention.py passes enable_gqa=True). Measured:
    infer-llama-3.2-1b-fp32-b4-p2048-n64 (+4.1 GiB), full-qwen2.5-0.5b-fp32-adamw-b8-s1024."""
    return w.attn == "sdpa" and c == 4 and spec.num_kv_heads < spec.num_heads


def _unfused_gelu(spec: ModelSpec) -> bool:
    """GPT-2's gelu_new (transformers activations.NewGELUActivation) is written out in
    Python, so autograd keeps x, tanh(.), 0.5x and 1+tanh(.) where a fused GELU keeps x."""
    cfg = spec.config or {}
    act = cfg.get("activation_function") or cfg.get("hidden_act") or (
        "gelu_new" if spec.model_type == "gpt2" else "")  # GPT2Config's default
    return act in ("gelu_new", "gelu_fast", "quick_gelu")


def inference(spec: ModelSpec, w: Workload, comps: list[Component]) -> str:
    s = _Shapes.of(spec)
    c = BYTES[_act_dtype(w)]
    kv = kv_cache_bytes(spec, w)
    comps.append(Component("kv_cache", kv,
                           f"2 x {s.layers} layers x {s.kv} kv width x ({w.prompt}+{w.new}) tokens x batch {w.batch} x {c} B",
                           "Hugging Face cache_utils.DynamicCache; Pope et al. 2022 (KV cache size)"))
    t = w.batch * w.prompt
    mlp = s.inter if not spec.is_moe else int(s.inter * K.MOE_PREFILL_FACTOR)
    per_tok = (K.PREFILL_INTER * mlp + K.PREFILL_HIDDEN * s.h) * c
    prefill = t * per_tok
    formula = f"{t} prompt tokens x ({K.PREFILL_INTER} x {mlp} + {K.PREFILL_HIDDEN} x {s.h}) x {c} B"
    if w.attn == "eager":
        # eager_attention_forward (modeling_llama.py) holds, per score, the scores in the
        # compute dtype while softmax(dtype=float32) makes an fp32 copy of its input and its
        # fp32 output: c + 4 + 4 B (c + 4 in fp32, where the copy is skipped).
        # infer-llama-3.2-1b-bf16-b4-p4096-n64-eager: 20.0 GiB of scores at 10 B each.
        per = c + 4 + (4 if c != 4 else 0)
        prefill += w.batch * s.heads * w.prompt * w.prompt * per
        formula += f" + scores {w.batch} x {s.heads} x {w.prompt}^2 x {per} B"
    elif _math_sdpa(spec, w, c):
        # math sdpa: the fp32 scores (with the mask added) and their softmax at once.
        prefill += w.batch * s.heads * w.prompt * w.prompt * 8
        formula += f" + math-kernel scores {w.batch} x {s.heads} x {w.prompt}^2 x 8 B"
    if w.dtype in ("nf4", "fp4", "int8", "gptq", "awq"):
        # Each quantized linear is dequantized to 16 bit for its matmul (bitsandbytes
        # MatMul4Bit / int8 outlier path): one layer's largest weight at a time.
        largest = max(sh.in_features * sh.out_features for _, ls in _layer_groups(spec) for sh in ls)
        prefill += largest * 2
        formula += f" + dequantized weight {_fmt_n(largest)} x 2 B"
    comps.append(Component("activations", int(prefill), formula,
                           "measured prefill working set, H100 (coefficients.py)"))
    # Last-position logits only: generate() calls the model with logits_to_keep=1 and
    # the logits processors work in fp32 (generation/utils.py).
    comps.append(Component("logits", w.batch * s.vocab * (c + 4) * 2,
                           f"batch {w.batch} x vocab {s.vocab} x ({c}+4) B x 2",
                           "transformers generation/utils.py: logits_to_keep=1, fp32 scores"))
    comps.append(Component("temp_buffers", K.CUBLAS_WORKSPACE, "cuBLAS workspace",
                           "torch CUDABlasHandlePool: 4096 KiB x 8 on Hopper"))
    return "prefill"


# ---- training -----------------------------------------------------------------------------

def _layer_saved(spec: ModelSpec, w: Workload, s: _Shapes, c: int) -> list[tuple[str, str, int]]:
    """The tensors autograd saves per decoder layer (HF Llama-family layer, sdpa), in the
    order the forward makes them: (part, what, bytes per token), part "attn" or "mlp" for
    the half of the layer whose backward frees it. Their sum is the layer's activations;
    the allocator replay (step_replay.py) allocates each one."""
    full = w.task in ("full", "galore")
    amp = w.task == "full" and w.amp != "none"
    lora = w.task in ("lora", "qlora")
    out: list[tuple[str, str, int]] = []

    def norm(part: str) -> None:
        # RMSNorm (modeling_llama.LlamaRMSNorm): x.to(fp32) saved by pow (4h); the
        # normalized value cast back is saved for the weight's grad when the weight trains
        # (c*h); under autocast also the fp32 output (weight * x) kept for its own grad.
        out.append((part, "norm fp32 input", 4 * s.h))
        if full:
            # Gemma's RMSNorm multiplies in fp32 (modeling_gemma2.Gemma2RMSNorm:
            # _norm(x.float()) * (1 + weight.float())), so the normalized value its weight's
            # grad needs is kept in fp32 (trace-full-gemma-2-2b-bf16-adamw-b4-s1024: 1.8 GiB
            # over 26 layers x 4 norms without this).
            out.append((part, "norm normalized", (4 if spec.model_type in GEMMA_NORM else c) * s.h))
        if amp:
            out.append((part, "norm fp32 output", 4 * s.h))

    # The norm's output is saved by the projections that read it when they train: once,
    # or per reader under autocast, which casts per call. A frozen projection keeps no
    # input (its weight needs no grad); LoRA's own fp32 copy of it is counted below.
    attn_readers = 3 if amp else 1
    mlp_readers = (2 if spec.gated_mlp else 1) if amp else 1
    # LoRA (peft tuners/lora/layer.py): the input is cast to the fp32 adapter dtype and
    # saved by lora_A (4 x in per target), lora_A's output saved by lora_B (4 x r).
    # Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj: one LoRA per fused
    # module, one fp32 input copy (lora-phi-3-mini-4k-instruct-r16-all-b8-s1024: 9 GiB
    # over without this).
    lora_items: dict[str, list[tuple[str, str, int]]] = {"attn": [], "mlp": []}
    if lora:
        targets = _lora_targets(w)
        seen: set[str] = set()
        for sh in _layer_groups(spec)[-1][1]:
            key = _target_key(sh.name)
            if key in targets:
                part = "attn" if key in ("q", "k", "v", "o") else "mlp"
                group = FUSED.get(spec.model_type, {}).get(key, key)
                if group not in seen:
                    seen.add(group)
                    lora_items[part].append((part, f"LoRA fp32 input of {sh.name}", 4 * sh.in_features))
                lora_items[part].append((part, f"LoRA A output of {sh.name}", 4 * w.lora_r))
    # Gemma 2 / 3 add post-attention and post-MLP norms (norms_per_layer 4).
    n_norms = max(2, spec.norms_per_layer or (4 if spec.model_type in ("gemma2", "gemma3", "gemma3_text") else 2))

    norm("attn")
    if full or amp:
        out += [("attn", "norm output", c * s.h)] * attn_readers
    out += lora_items["attn"]
    # sdpa saves q, k, v and its output (torch scaled_dot_product_attention backward); the
    # output doubles as o_proj's input.
    out += [("attn", "q", c * s.q), ("attn", "k", c * s.kv), ("attn", "v", c * s.vd)]
    if spec.model_type in QK_NORM_TYPES:
        # RMSNorm on q and k per head (modeling_qwen3.Qwen3Attention q_norm / k_norm): its
        # fp32 input is saved, and the normalised output when its weight trains. Measured:
        # full-qwen3-1.7b-bf16-adamw-b4-s1024 and qlora-qwen3-8b-r16-all-b1-s4096 (-2 GiB without).
        out += [("attn", "q/k norm fp32 input", 4 * (s.q + s.kv))]
        if full:
            out.append(("attn", "q/k norm normalized", c * (s.q + s.kv)))
    if w.attn == "eager":
        # scores in c, fp32 softmax (saved by the cast/matmul), GQA keys/values repeated
        # to every head (repeat_kv), per token: heads x seq.
        out += [("attn", "scores", s.heads * w.seq * c), ("attn", "fp32 softmax", s.heads * w.seq * 4),
                ("attn", "repeated k/v", c * 2 * (s.q - s.kv))]
    elif _math_sdpa(spec, w, c):
        # math sdpa saves the fp32 softmax output (for its own and the value matmul's grad).
        out.append(("attn", "math-kernel softmax", s.heads * w.seq * 4))
    out.append(("attn", "attention output", c * s.q))
    for i in range(n_norms - 2):
        norm("attn" if i == 0 else "mlp")
    norm("mlp")
    if full or amp:
        out += [("mlp", "norm output", c * s.h)] * mlp_readers
    out += lora_items["mlp"]
    # SwiGLU: gate out (saved by SiLU), SiLU out and up out (saved by the product), the
    # product (saved by down_proj when it trains).
    if spec.gated_mlp:
        out += [("mlp", "gate", c * s.inter), ("mlp", "act", c * s.inter), ("mlp", "up", c * s.inter)]
        if full:
            out.append(("mlp", "product", c * s.inter))
    else:
        # fc out, GELU out, and GELU's internal copy; GPT-2's gelu_new written out in
        # Python keeps two more.
        out += [("mlp", "fc", c * s.inter), ("mlp", "gelu", c * s.inter), ("mlp", "gelu copy", c * s.inter)]
        if _unfused_gelu(spec):
            out.append(("mlp", "gelu_new terms", 2 * c * s.inter))
    return out


def _layer_activation_bytes(spec: ModelSpec, w: Workload, s: _Shapes, c: int) -> tuple[float, str]:
    """Bytes autograd saves per token per decoder layer, and how they divide."""
    saved = _layer_saved(spec, w, s, c)
    groups: dict[str, int] = {}
    for _, what, b in saved:
        key = ("LoRA" if what.startswith("LoRA") else "norms" if "norm" in what
               else "MLP" if what in ("gate", "act", "up", "product", "fc", "gelu", "gelu copy", "gelu_new terms")
               else "attention")
        groups[key] = groups.get(key, 0) + b
    total = sum(groups.values())
    desc = " + ".join(f"{k} {groups[k]}" for k in ("norms", "attention", "MLP", "LoRA") if k in groups)
    return total, desc + " B/token/layer"


# Model types with RMSNorm on queries and keys (q_norm / k_norm).
QK_NORM_TYPES = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2", "olmoe"}
# Gemma's RMSNorm computes (1 + weight) * normed in fp32 (modeling_gemma*.py GemmaRMSNorm).
GEMMA_NORM = {"gemma", "gemma2", "gemma3", "gemma3_text"}
# Projections one fused HF module computes (LoRA wraps the fused module).
FUSED = {"phi3": {"q": "qkv", "k": "qkv", "v": "qkv", "gate": "gate_up", "up": "gate_up"}}


def _target_key(name: str) -> str:
    n = name.replace("shared_", "")
    return {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate",
            "up_proj": "up", "down_proj": "down"}.get(n, n)


def _lora_targets(w: Workload) -> set[str]:
    return {"qv": {"q", "v"}, "qkvo": {"q", "k", "v", "o"},
            "all": {"q", "k", "v", "o", "gate", "up", "down"}}[w.lora_targets]


def lora_params(spec: ModelSpec, w: Workload) -> int:
    """r x (in + out) per targeted linear (Hu et al. 2021, LoRA; peft LoraLayer)."""
    targets = _lora_targets(w)
    n = 0
    for layers, linears in _layer_groups(spec):
        for sh in linears:
            if _target_key(sh.name) in targets and not sh.expert:
                n += layers * w.lora_r * (sh.in_features + sh.out_features)
    return n


def optimizer_state_bytes(w: Workload, trainable: int, param_b: int) -> tuple[int, str, str]:
    o = w.optim
    if o == "adamw":
        return 2 * trainable * param_b, f"2 x {_fmt_n(trainable)} x {param_b} B (exp_avg, exp_avg_sq)", \
            "torch/optim/adamw.py: states in the parameter dtype"
    if o in ("adamw8bit", "paged-adamw8bit"):
        # 8-bit blockwise states + an fp32 absmax per 256 values (Dettmers et al. 2022,
        # 8-bit Optimizers via Block-wise Quantization; bitsandbytes Optimizer2State).
        return int(trainable * 2 * (1 + 4 / 256)), f"2 x {_fmt_n(trainable)} x (1 + 4/256) B", \
            "bitsandbytes optim/optimizer.py Optimizer2State (block size 256)"
    if o == "sgd":
        return 0, "none", "torch/optim/sgd.py"
    if o == "sgd-momentum":
        return trainable * param_b, f"{_fmt_n(trainable)} x {param_b} B (momentum buffer)", "torch/optim/sgd.py"
    if o == "adafactor":
        return int(trainable * K.ADAFACTOR_STATE_FRACTION * param_b), "factored row/column second moments", \
            "Shazeer & Stern 2018, Adafactor; torch/optim/_adafactor.py"
    if o == "lion":
        # bitsandbytes' 32-bit Lion keeps its one state in fp32 whatever the parameter dtype.
        return trainable * 4, f"{_fmt_n(trainable)} x 4 B (fp32 momentum)", "Chen et al. 2023, Lion; bitsandbytes Optimizer1State"
    raise ValueError(o)


def _galore_state(spec: ModelSpec, w: Workload, param_b: int) -> tuple[int, int]:
    """(states bytes, projected params) for GaLore: per projected matrix m x n, Adam states
    of the projected gradient (2 x r x max(m, n)) and the projection (r x min(m, n))
    (Zhao et al. 2024, GaLore, Algorithm 1; galore_torch/galore_projector.py)."""
    r = w.galore_rank
    states = 0
    projected = 0
    for layers, linears in _layer_groups(spec):
        for sh in linears:
            m, n = sh.out_features, sh.in_features
            rr = min(r, m, n)
            per = (2 * rr * max(m, n)) * (1 if w.optim in ("adamw8bit", "paged-adamw8bit") else param_b) \
                + rr * min(m, n) * param_b
            states += layers * per * sh.count
            projected += layers * sh.params
    return states, projected


def training(spec: ModelSpec, w: Workload, comps: list[Component], linear: int) -> str:
    s = _Shapes.of(spec)
    pc = _counts(spec)
    total_params = pc.total
    amp = w.task == "full" and w.amp != "none"
    c = BYTES[w.compute_dtype]
    tokens = w.batch * w.seq

    # -- trainable parameters, gradients, optimizer states --------------------------------
    if w.task in ("lora", "qlora"):
        trainable = lora_params(spec, w)
        # peft keeps adapters in fp32 (autocast_adapter_dtype=True): weights, grads and
        # optimizer states of the adapters at 4 B.
        param_b = 4
        comps.append(Component("adapters", trainable * 4,
                               f"{_fmt_n(trainable)} LoRA params (r={w.lora_r}, {w.lora_targets}) x 4 B",
                               "Hu et al. 2021 (LoRA); peft tuners/lora/layer.py, fp32 adapters"))
    else:
        frozen = 0
        if w.frozen_layers:
            per_layer = (pc.linear + pc.norms) / max(1, spec.num_layers)
            frozen = int(min(w.frozen_layers, spec.num_layers) * per_layer)
        trainable = total_params - frozen
        param_b = BYTES[w.dtype]
    grad_b = param_b
    grads = trainable * grad_b
    comps.append(Component("gradients", grads, f"{_fmt_n(trainable)} trainable x {grad_b} B",
                           "one gradient per trainable parameter, in its dtype"))

    if w.task == "galore":
        gal, projected = _galore_state(spec, w, param_b)
        rest = trainable - projected
        st_rest, _, _ = optimizer_state_bytes(w.with_(task="full"), rest, param_b)
        states = gal + st_rest
        comps.append(Component("optimizer", states,
                               f"GaLore rank {w.galore_rank} on {_fmt_n(projected)} params + full states on {_fmt_n(rest)}",
                               "Zhao et al. 2024 (GaLore); galore_torch/galore_projector.py"))
    elif w.shard_stage and w.dtype in ("bf16", "fp16") and w.optim == "adamw":
        # DeepSpeed / FSDP mixed precision: 16-bit parameters and gradients, the optimizer
        # holding fp32 master weights plus two fp32 Adam states, 12 B per parameter
        # (Rajbhandari et al. 2020, ZeRO, section 3.1: K = 12).
        states = trainable * 12
        comps.append(Component("optimizer", states, f"{_fmt_n(trainable)} x 12 B (fp32 master, exp_avg, exp_avg_sq)",
                               "ZeRO paper section 3.1 (K = 12); deepspeed/runtime/zero/stage_1_and_2.py"))
    else:
        states, formula, src = optimizer_state_bytes(w, trainable, param_b)
        comps.append(Component("optimizer", states, formula, src))

    # foreach AdamW makes one parameter-sized temporary (exp_avg_sq.sqrt()) during
    # step(): torch/optim/adam.py _multi_tensor_adam, torch._foreach_sqrt.
    opt_temp = 0
    if w.optim == "adamw" and w.task != "galore":
        opt_temp = trainable * param_b
    elif w.optim == "sgd-momentum":
        opt_temp = 0
    elif w.task == "galore":
        largest = max(sh.in_features * sh.out_features for _, ls in _layer_groups(spec) for sh in ls)
        opt_temp = largest * 4 * 3  # fp32 SVD of the largest gradient (U, S, Vh)

    # -- activations ------------------------------------------------------------------------
    per_layer, per_layer_desc = _layer_activation_bytes(spec, w, s, c)
    if w.grad_ckpt:
        # HF gradient checkpointing keeps each layer's input and recomputes one layer at a
        # time in backward (Chen et al. 2016; torch.utils.checkpoint, non-reentrant).
        kept = s.layers * tokens * c * s.h + tokens * per_layer
        act_formula = (f"{s.layers} layer inputs x {tokens} tokens x {c} B + one layer recomputed "
                       f"({per_layer:.0f} B/token)")
        act_src = "Chen et al. 2016 (gradient checkpointing); transformers gradient_checkpointing_enable"
    else:
        kept = s.layers * tokens * per_layer
        act_formula = f"{s.layers} layers x {tokens} tokens x ({per_layer_desc})"
        act_src = ("Korthikanti et al. 2022 (activation memory), per tensor saved in "
                   "transformers modeling_llama.py with sdpa")
    # final norm and embedding output
    kept += tokens * (4 * s.h + 2 * c * s.h)
    if amp:
        # autocast caches the 16-bit copy of every weight a linear used until backward
        # frees the graph (torch/csrc/autograd/autocast_mode.cpp, cached casts).
        kept += (linear + s.vocab * s.h) * c
        act_formula += f" + autocast weight copies {_fmt_n(linear + s.vocab * s.h)} x {c} B"
    kept = int(kept * K.TRAIN_ACT_FACTOR)
    comps.append(Component("activations", kept, act_formula, act_src))

    # -- logits and loss ------------------------------------------------------------------
    # ForCausalLMLoss (transformers loss/loss_utils.py): logits.float() then
    # cross_entropy, whose log_softmax saves its fp32 output; the model's own logits in
    # the compute dtype stay referenced by the output. Backward then holds the fp32 grads
    # of log_softmax's output and input at once.
    lo_c = c  # the model's logits (in fp32 the upcast is a no-op, the tensor is still kept)
    softcap = c if spec.model_type in ("gemma2",) else 0  # final_logit_softcapping's tanh
    logits_kept = tokens * s.vocab * (lo_c + 4 + softcap)
    logits_peak = tokens * s.vocab * (4 + 4)
    comps.append(Component("logits", logits_kept + logits_peak,
                           f"{tokens} tokens x vocab {s.vocab} x ({lo_c}+4{'+' + str(softcap) if softcap else ''} kept + 8 in backward) B",
                           "transformers loss/loss_utils.py ForCausalLMLoss (fp32 upcast)"))
    # One cuBLAS handle and workspace per thread: the forward's and autograd's backward
    # thread's (two 32 MiB blocks never freed in every H200 training history; the
    # checkpointed runs' working sets were 32-34 MiB short with one).
    comps.append(Component("temp_buffers", 2 * K.CUBLAS_WORKSPACE, "cuBLAS workspaces (forward, backward thread)",
                           "torch CUDABlasHandlePool: 4096 KiB x 8 on Hopper, one per thread"))

    # -- which moment is the peak ----------------------------------------------------------
    if w.grad_ckpt:
        # The loss's backward (logits grads) finishes and frees before the last layer is
        # recomputed: the two transients do not overlap. Measured on the five -ckpt runs
        # (their sum over-predicts by 0.3 x one fp32 logits copy).
        recompute = tokens * per_layer
        backward_peak = kept - recompute + logits_kept + max(logits_peak, recompute) \
            + (grads if w.grad_accum > 1 else 0)
        if logits_peak > recompute:
            kept -= recompute
            _replace(comps, "activations", int(kept), act_formula.split(" + one layer")[0]
                     + " (the recomputed layer comes after the loss's backward)")
    else:
        backward_peak = kept + logits_kept + logits_peak + (grads if w.grad_accum > 1 else 0)
    optimizer_peak = grads + opt_temp
    if optimizer_peak > backward_peak:
        # At optimizer.step() activations are gone; gradients and the step's buffers are
        # what sits on top of weights and states.
        _replace(comps, "activations", 0, "freed before optimizer.step()")
        _replace(comps, "logits", 0, "freed before optimizer.step()")
        comps.append(Component("optimizer_temp", opt_temp, "one parameter-sized temporary",
                               "torch/optim/adam.py _multi_tensor_adam (_foreach_sqrt)"))
        return "optimizer step"
    if w.grad_accum <= 1:
        # Gradients are being created as activations are freed; at the start of backward
        # (the peak) they are not there yet: torch frees each saved tensor after use.
        _replace(comps, "gradients", 0, f"not yet allocated at the peak ({_fmt_n(trainable)} x {grad_b} B later)")
    return "backward"


def _weight_store_bytes(numel: int, linear: bool, w: Workload) -> int:
    """Bytes one parameter tensor takes as loaded (weight_bytes, tensor by tensor)."""
    if w.dtype in BYTES:
        return numel * BYTES[w.dtype]
    if not linear:
        return numel * 2  # embeddings, norms and the head stay 16-bit
    if w.dtype == "int8":
        return numel
    return int(numel * (NF4_BITS + NF4_DQ_EXTRA_BITS) / 8)  # nf4 / fp4 (QLoRA)


def _optimizer_tensors(w: Workload, numel: int, sb: int, projected: tuple[int, int] | None = None
                       ) -> tuple[tuple[int, ...], int]:
    """(the states made at the first step, the step's temporary) of one parameter, as
    optimizer_state_bytes counts them in total."""
    o = w.optim
    if projected is not None:  # GaLore: Adam states of the r x n projection, and the projector
        r, m, n = w.galore_rank, *projected
        rr = min(r, m, n)
        per = 1 if o in ("adamw8bit", "paged-adamw8bit") else sb
        return (rr * max(m, n) * per, rr * max(m, n) * per, rr * min(m, n) * sb), numel * 4 * 3
    if o == "adamw":
        return (numel * sb, numel * sb), (numel * sb if w.task != "galore" else 0)
    if o == "adamw8bit":
        if numel < 4096:  # bitsandbytes min_8bit_size: small tensors keep 32-bit states
            return (numel * 4, numel * 4), 0
        return (numel, numel, numel // 256 * 4, numel // 256 * 4), 0
    if o == "sgd-momentum":
        return (numel * sb,), 0
    if o == "lion":
        return (numel * 4,), 0
    return (), 0  # sgd; adafactor's factors are vectors; paged states live in managed memory


def step_plan(spec: ModelSpec, w: Workload) -> StepPlan:
    """The training step as tensors, for the allocator replay (step_replay.py)."""
    return _cached(spec, ("plan", w), lambda: _make_step_plan(spec, w))


def _make_step_plan(spec: ModelSpec, w: Workload) -> StepPlan:
    s = _Shapes.of(spec)
    c = BYTES[w.compute_dtype]
    amp = w.task == "full" and w.amp != "none"
    full = w.task in ("full", "galore")
    lora = w.task in ("lora", "qlora")
    sb = 4 if amp or lora else (BYTES[w.dtype] if w.dtype in BYTES else 2)
    tokens = w.batch * w.seq
    hc = 4 if amp else c  # the residual stream stays fp32 under autocast

    def param(numel: int, part: str, linear: bool, trains: bool, shape: tuple[int, int] | None = None) -> Param:
        weight = _weight_store_bytes(numel, linear, w)
        if not trains:
            return Param(weight, 0, part=part)
        proj = shape if (w.task == "galore" and linear and shape) else None
        states, temp = _optimizer_tensors(w, numel, sb, proj)
        return Param(weight, numel * sb, states, temp, part,
                     autocast_copy=numel * c if amp and linear else 0,
                     grad_via=numel * c if amp and linear else 0)

    targets = _lora_targets(w) if lora else set()
    attention = {sh.name for sh in spec.attention_linears()}

    def layer(linears, trains: bool) -> tuple[Param, ...]:
        out = []
        for sh in linears:
            key = _target_key(sh.name)
            part = "attn" if sh.name in attention else "mlp"
            out.append(param(sh.params, part, True, trains, (sh.out_features, sh.in_features)))
            if key in targets and not sh.expert:
                for numel in (w.lora_r * sh.in_features, w.lora_r * sh.out_features):
                    states, temp = _optimizer_tensors(w, numel, 4)
                    out.append(Param(numel * 4, numel * 4, states, temp, part))
        out.append(param(spec.layer_norm_params(), "attn", False, trains))
        return tuple(out)

    kinds: list[tuple[Param, ...]] = []
    runs: list[tuple[int, int]] = []
    frozen = min(w.frozen_layers, spec.num_layers) if full else 0
    start = 0
    for n, linears in _layer_groups(spec):  # dense layers first (DeepSeek), then the rest
        for trains, count in ((False, max(0, min(n, frozen - start))), (full, n - max(0, min(n, frozen - start)))):
            if count:
                kinds.append(layer(linears, trains))
                runs.append((len(kinds) - 1, count))
        start += n
    # k and v are held by the DynamicCache the forward returns (step_replay: "kv") unless
    # checkpointing turns the cache off
    saved = tuple(("kv" if what in ("k", "v") and not w.grad_ckpt else part, tokens * b)
                  for part, what, b in _layer_saved(spec, w, s, c))
    embed = param(s.vocab * s.h, "embed", spec.tie_embeddings and amp, full)
    # from_config builds a tied head and drops it (generate_plan's tied_transient); a 4-bit
    # load ties without building one
    tied = embed.weight if spec.tie_embeddings and w.dtype not in ("nf4", "fp4", "int8") else 0
    return StepPlan(
        embed=(embed,), tied_transient=tied,
        layer_kinds=tuple(kinds), layer_runs=tuple(runs),
        head=() if spec.tie_embeddings else (param(s.vocab * s.h, "head", True, full),),
        saved=saved, hidden=tokens * s.h * hc,
        layer_input=tokens * s.h * hc, grad_ckpt=w.grad_ckpt, mlp_grad=tokens * s.inter * c,
        attn_grads=(tokens * s.q * c, tokens * s.q * c, tokens * s.kv * c, tokens * s.vd * c),
        final_norm=(tokens * s.h * 4, tokens * s.h * c, tokens * s.h * c),
        logits=tokens * s.vocab * c, logits_fp32=tokens * s.vocab * 4 if c != 4 else 0,
        log_softmax=tokens * s.vocab * 4,
        softcap=tokens * s.vocab * c if spec.model_type == "gemma2" else 0,
        # A third micro-step repeats the second (its gradients are temporaries added in place).
        micro_steps=min(w.grad_accum, 2), tied_embeddings=spec.tie_embeddings,
        foreach_temps=w.optim == "adamw" and w.task != "galore", stepwise_temps=w.task == "galore")


def generate_plan(spec: ModelSpec, w: Workload) -> GeneratePlan | None:
    """generate() as tensors for the allocator replay (generate_replay.py), or None where
    the replay does not hold the architecture's tensors (other decoders, eager attention,
    GPT-2 with quantized weights, MoE, a sliding window shorter than the run, a quantized KV cache, a config
    deeper than any published model)."""
    if (w.training or spec.model_type not in SUPPORTED_TYPES or spec.is_moe or w.attn != "sdpa"
            or w.dtype not in ("fp32", "fp16", "bf16", "nf4", "fp4", "int8") or w.kv_dtype
            or (spec.sliding_window and w.prompt + w.new > spec.sliding_window) or w.gpus != 1
            or w.offload != "none" or spec.num_layers > MAX_REPLAY_LAYERS):
        return None
    if spec.model_type == "gpt2" and (w.dtype in ("nf4", "fp4", "int8") or not _gelu_new(spec)
                                      or w.prompt + w.new > spec.max_position):
        return None
    return _cached(spec, ("gplan", w), lambda: _make_generate_plan(spec, w))


# Config classes whose eos_token_id has a default (LlamaConfig, MistralConfig: 2;
# GPT2Config: 50256); Qwen2Config and Qwen3Config have none.
_DEFAULT_EOS = frozenset({"llama", "mistral", "gpt2"})


def _has_eos(spec: ModelSpec) -> bool:
    """Whether generate() gets an end-of-sequence token, and with it min_new_tokens' logits
    processors (generation/logits_process.py MinNewTokensLengthLogitsProcessor)."""
    cfg = spec.config or {}
    if "eos_token_id" in cfg:
        return cfg["eos_token_id"] is not None
    return spec.model_type in _DEFAULT_EOS


def _gelu_new(spec: ModelSpec) -> bool:
    cfg = spec.config or {}
    return (cfg.get("activation_function") or "gelu_new") == "gelu_new"  # GPT2Config's default


def _make_generate_plan(spec: ModelSpec, w: Workload) -> GeneratePlan:
    s = _Shapes.of(spec)
    c = BYTES[_act_dtype(w)]
    tied = c * s.vocab * s.h if spec.tie_embeddings else 0
    if spec.model_type == "gpt2":
        # GPT2LMHeadModel.parameters(): wte, wpe, per block ln_1, c_attn, c_proj, ln_2,
        # c_fc, c_proj (each weight then bias), ln_f.
        h, i = s.h, s.inter
        block = (h, h, h * 3 * h, 3 * h, h * h, h, h, h, h * i, i, i * h, h)
        weights = [s.vocab * h, spec.max_position * h] + list(block) * s.layers + [h, h]
        return GeneratePlan(
            weights=tuple(c * n for n in weights), layers=s.layers, hidden=h, q=s.q, kv=s.kv,
            head_dim=spec.head_dim, heads=s.heads, inter=i, vocab=s.vocab, c=c, batch=w.batch,
            prompt=w.prompt, new=w.new, math_scores=_math_sdpa(spec, w, c), gpt2=True,
            tied_transient=tied, processors=_has_eos(spec))
    quant = w.dtype in ("nf4", "fp4", "int8")

    def store(numel: int) -> int:  # a tensor bitsandbytes leaves alone: 16-bit
        return numel * 2 if w.dtype == "int8" else _weight_store_bytes(numel, False, w)

    embed = store(s.vocab * s.h)
    norm = store(s.h)
    weights: list[int] = [] if quant else [embed]
    transients: list[int] = []
    for _ in range(s.layers):
        for sh in spec.layer_linears():
            numel = sh.in_features * sh.out_features
            if w.dtype == "int8":
                # bitsandbytes Int8Params: the 16-bit weight goes to the GPU, its int8 copy
                # and fp32 row scales (SCB) are made, the 16-bit one freed
                # (trace-infer-llama-3.2-1b-int8-b8-p1024-n64).
                transients += [0] * (len(weights) - len(transients)) + [0, numel * 2]
                weights += [sh.out_features * 4, numel]
            elif quant:
                # bitsandbytes Params4bit: the 16-bit weight goes to the GPU, is packed
                # two to a byte, then freed; the block-wise constants are small tensors.
                transients += [0] * (len(weights) - len(transients)) + [numel * 2]
                weights += [numel // 2, _weight_store_bytes(numel, True, w) - numel // 2]
            else:
                weights.append(_weight_store_bytes(numel, True, w))
            if sh.bias:
                weights.append(store(sh.out_features))
        weights += [norm, norm]
        if spec.model_type in ("qwen3",):
            weights += [store(spec.head_dim)] * 2
    if quant:
        weights.append(embed)  # after the quantized layers (trace-infer-qwen2.5-1.5b-fp4-...)
    weights.append(norm)
    if not spec.tie_embeddings:
        weights.append(store(s.vocab * s.h))  # lm_head stays 16-bit
    elif quant:
        tied = 0  # the quantized load ties without building a head first
    transients += [0] * (len(weights) - len(transients))
    return GeneratePlan(
        weights=tuple(weights), transients=tuple(transients), layers=s.layers, hidden=s.h, q=s.q,
        kv=s.kv, head_dim=spec.head_dim, heads=s.heads, inter=s.inter, vocab=s.vocab, c=c,
        batch=w.batch, prompt=w.prompt, new=w.new,
        qk_norm=spec.model_type == "qwen3", dequant=w.dtype in ("nf4", "fp4"), int8=w.dtype == "int8",
        math_scores=_math_sdpa(spec, w, c), tied_transient=tied, processors=_has_eos(spec),
        outliers=outlier_columns(s.layers, w.batch * w.prompt, s.h, s.inter, spec.model_type == "qwen3")
        if w.dtype == "int8" else ())


def _replace(comps: list[Component], key: str, value: int, why: str) -> None:
    for i, c in enumerate(comps):
        if c.key == key:
            comps[i] = Component(key, value, f"{why}", c.source)


def _reserve(spec: ModelSpec, comps: list[Component], w: Workload) -> Component:
    """PyTorch's caching allocator keeps freed blocks for reuse and rounds large blocks up
    (c10/cuda/CUDACachingAllocator.cpp), so nvidia-smi sees reserved, not allocated,
    memory. For a full fine-tune on one GPU the gap (reserved - allocated at the peak) is
    found by replaying the step through the allocator's rules (step_replay.py), for
    Llama-style inference by replaying generate() (generate_replay.py); otherwise it is
    fitted by least squares on the tune split to the transients that cause it
    (coefficients.py says which runs)."""
    b = {c.key: c.bytes for c in comps}
    source = "c10/cuda/CUDACachingAllocator.cpp; coefficients fitted on H100 runs"
    plan = generate_plan(spec, w)
    if plan is not None:
        # generate() replayed tensor by tensor: the working set and the reserve come from
        # the replay's peaks, so that the total is the replayed peak reserved.
        g = generate_reserve(plan)
        fixed = sum(c.bytes for c in comps if c.key in ("weights", "kv_cache", "logits", "temp_buffers"))
        _replace(comps, "activations", max(0, g.peak_allocated - fixed),
                 "prefill working set, generate() replayed tensor by tensor (generate_replay.py)")
        used = sum(c.bytes for c in comps if c.key != "cuda_context")
        return Component("allocator_reserve", max(0, g.peak_reserved - used),
                         "generate() replayed through the caching allocator's rules (generate_replay.py)",
                         "c10/cuda/CUDACachingAllocator.cpp, replayed")
    if not w.training:
        s = _Shapes.of(spec)
        c = BYTES[_act_dtype(w)]
        scores = w.batch * s.heads * w.prompt * w.prompt * (c + 4 + (4 if c != 4 else 0)) \
            if w.attn == "eager" else 0
        other = b.get("activations", 0) - scores
        int8 = 0
        if w.dtype == "int8":
            int8 = max(sh.in_features * sh.out_features for _, ls in _layer_groups(spec) for sh in ls)
        gap = (K.RESERVE_KV * b.get("kv_cache", 0) + K.RESERVE_PREFILL * other
               + K.RESERVE_EAGER_SCORES * scores + K.RESERVE_INT8_PER_WEIGHT * int8)
        formula = (f"{K.RESERVE_KV:g} x KV cache (grown by torch.cat each token) + {K.RESERVE_PREFILL:g} x prefill"
                   + (f" + {K.RESERVE_EAGER_SCORES:g} x eager scores" if scores else "")
                   + (f" + {K.RESERVE_INT8_PER_WEIGHT:g} B x largest int8 weight" if int8 else ""))
    elif w.task in ("full", "galore") and w.gpus == 1 and w.offload == "none":
        # Full fine-tuning: the optimizer's states and AdamW's temporaries are what cut the
        # allocator's cache into pieces the next step cannot use; replayed block by block.
        gap = fragmentation(step_plan(spec, w))
        formula = "the training step replayed through the caching allocator's rules (step_replay.py)"
        source = "c10/cuda/CUDACachingAllocator.cpp, replayed"
    elif w.task in ("lora", "qlora") and w.gpus == 1 and w.offload == "none":
        # Adapters: their states are too small to fragment anything. The allocator
        # histories (trace-qlora-mistral-7b-v0.3-r16-all-b4-s1024, 2 steps) show the reserve
        # building up layer by layer in the forward: the norms' and PEFT's fp32 temporaries
        # of each layer leave holes of a hidden state's fp32 size that the next layer's
        # tensors do not fit; under checkpointing the recomputed layer's MLP temporaries
        # instead. Not replayed yet (the step replay makes no forward temporaries): fitted.
        s = _Shapes.of(spec)
        tokens = w.batch * w.seq
        if w.grad_ckpt:
            gap = K.RESERVE_ADAPTER_RECOMPUTE * tokens * s.inter * 4
            formula = f"{K.RESERVE_ADAPTER_RECOMPUTE:g} x {tokens} tokens x MLP width {s.inter} x 4 B (recompute)"
        else:
            gap = K.RESERVE_ADAPTER_LAYER_HIDDEN * s.layers * tokens * s.h * 4
            formula = (f"{K.RESERVE_ADAPTER_LAYER_HIDDEN:g} x {s.layers} layers x {tokens} tokens x "
                       f"hidden {s.h} x 4 B (a fp32 hole per layer)")
    else:
        # Several GPUs and offload: a fit over the one-GPU runs of round 1.
        adam = b.get("weights", 0) if (w.optim == "adamw" and w.task != "galore") else 0
        if w.task in ("lora", "qlora"):
            adam = 0
        gap = (K.RESERVE_LOGITS * b.get("logits", 0) + K.RESERVE_ACTIVATIONS * b.get("activations", 0)
               + K.RESERVE_FOREACH * adam)
        formula = (f"{K.RESERVE_LOGITS:g} x logits + {K.RESERVE_ACTIVATIONS:g} x activations"
                   + (f" + {K.RESERVE_FOREACH:g} x weights (foreach AdamW step)" if adam else ""))
    return Component("allocator_reserve", int(gap), formula, source)


def estimate(spec: ModelSpec, w: Workload) -> Estimate:
    comps: list[Component] = [_context(w)]
    weights, linear = weight_bytes(spec, w)
    comps += weights
    if w.training:
        stage = training(spec, w, comps, linear)
    else:
        stage = inference(spec, w, comps)
    _apply_sharding(spec, w, comps)
    comps.append(_reserve(spec, comps, w))
    comps = [c for c in comps if c.bytes > 0 or c.key in ("weights",)]
    assumptions = [
        "peak of the process on one GPU as nvidia-smi shows it, CUDA context included",
        "Hugging Face transformers model classes, PEFT adapters, bitsandbytes quantization",
    ]
    if w.training:
        assumptions.append("plain training loop: forward with labels, backward, optimizer.step(), zero_grad(set_to_none=True)")
    else:
        assumptions.append("Hugging Face generate(): prefill of the prompt, then token by token with a dynamic KV cache")
    confidence = spec.confidence
    if spec.model_type not in K.MEASURED_FAMILIES and confidence == "high":
        confidence = "medium"
    pc = _counts(spec)
    return Estimate(model_id=spec.id, model_name=spec.name, params=pc.total, workload=w,
                    components=tuple(comps), ram_components=tuple(_ram(spec, w)),
                    peak_stage=stage, assumptions=tuple(assumptions), confidence=confidence,
                    warnings=tuple(filter(None, [position_limit(spec, w)])))


def position_limit(spec: ModelSpec, w: Workload) -> str | None:
    """The sentence for a run longer than a learned position table (GPT-2's wpe, OPT's):
    no row exists past it, so the embedding lookup fails (on the H200, GPT-2 with 1,024 +
    128 tokens ended in a CUDA device-side assert; tests/gpu/cases_round4.py). Rotary
    models run past their max_position_embeddings, so only learned positions are refused."""
    if not spec.learned_positions:
        return None
    tokens = w.seq if w.training else w.prompt + w.new
    if tokens <= spec.max_position:
        return None
    what = f"a {w.seq:,}-token sequence" if w.training else \
        f"{w.prompt:,} prompt + {w.new:,} new tokens = {tokens:,}"
    return (f"{what} is longer than the {spec.max_position:,} learned positions of {spec.name}: "
            f"a real run fails (its position table has no row past {spec.max_position:,})")


def _apply_sharding(spec: ModelSpec, w: Workload, comps: list[Component]) -> None:
    """ZeRO / FSDP: stage 1 shards optimizer states, 2 also gradients, 3 also weights,
    each over the GPUs (Rajbhandari et al. 2020, ZeRO, section 5). Offload moves states
    (and with params, weights) to host RAM."""
    n = w.gpus
    stage = w.shard_stage
    if n <= 1 and w.offload == "none":
        return
    keys = set()
    if stage >= 1:
        keys.add("optimizer")
    if stage >= 2:
        keys.add("gradients")
    if stage >= 3:
        keys.add("weights")
        keys.add("quant_constants")
    for i, c in enumerate(comps):
        if c.key in keys:
            comps[i] = Component(c.key, c.bytes // n, f"({c.formula}) / {n} GPUs", c.source + "; ZeRO stage " + str(stage))
        if w.offload in ("optimizer", "params") and c.key == "optimizer":
            comps[i] = Component(c.key, 0, "offloaded to host RAM", "ZeRO-Offload (Ren et al. 2021)")
        if w.offload == "params" and c.key in ("weights",) and w.training:
            comps[i] = Component(c.key, comps[i].bytes // max(1, spec.num_layers) * 2,
                                 "offloaded; two layers resident at a time", "ZeRO-Infinity (Rajbhandari et al. 2021)")
    if n > 1:
        # NCCL communicator buffers and, for ZeRO-3 / FSDP full shard, one layer
        # gathered in full at a time.
        comps.append(Component("temp_buffers", K.NCCL_BUFFERS, "NCCL buffers", "measured; NCCL_BUFFSIZE default 4 MiB x channels"))


def _ram(spec: ModelSpec, w: Workload) -> list[Component]:
    """Host RAM at its peak: the runtime (python, torch, CUDA libraries), loading
    (safetensors are memory-mapped; a shard's pages pass through the page cache, so the
    largest shard, 5 GB on the Hub by default, is resident while it is copied), and
    offloaded state."""
    out = [Component("cuda_context", K.RUNTIME_RSS, "python + torch + CUDA libraries",
                     "measured RSS of the fit-test child after CUDA init")]
    pc = _counts(spec)
    shard = min(pc.total * BYTES.get(spec.torch_dtype, 2), K.HUB_SHARD_BYTES)
    out.append(Component("weights", int(shard), "one safetensors shard memory-mapped while loading",
                         "safetensors safe_open (mmap); huggingface_hub default max_shard_size 5GB"))
    if w.offload in ("optimizer", "params") and w.training:
        trainable = pc.total
        # ZeRO-Offload keeps fp32 master weights, fp32 gradients and Adam states on the
        # host: 4 + 4 + 8 bytes per parameter (Ren et al. 2021, section 4.1).
        per = 16 if w.optim == "adamw" else 8
        out.append(Component("optimizer", trainable * per,
                             f"{_fmt_n(trainable)} x {per} B (fp32 master, grads, states)", "Ren et al. 2021, ZeRO-Offload"))
    if w.offload == "params" and w.training:
        out.append(Component("weights", pc.total * BYTES[w.dtype if w.dtype in BYTES else "bf16"],
                             "offloaded parameters", "ZeRO-Infinity"))
    return out
