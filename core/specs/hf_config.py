"""ModelSpec from a Hugging Face ``config.json`` dict, whatever its spelling.

The field names, their defaults and the module layout follow the configuration and
modeling files of Hugging Face transformers (``configuration_<arch>.py`` /
``modeling_<arch>.py``), named where a rule comes from. Nothing here executes code from a
config: ``auto_map`` (remote code) is ignored and dropped.
"""

from __future__ import annotations

import math
from typing import Any

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.model_spec import ModelSpec

# ---- per-architecture facts ---------------------------------------------------------

# SwiGLU / GeGLU MLP (gate, up, down) vs plain two-matrix MLP (fc_in, fc_out).
GATED = {
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma",
    "gemma2", "gemma3", "gemma3_text", "phi3", "phimoe", "olmo", "olmo2", "olmoe",
    "deepseek_v2", "deepseek_v3", "cohere", "cohere2", "granite", "granitemoe", "internlm2",
    "exaone", "glm", "helium", "ministral", "mistral3", "llava", "smollm3",
}
PLAIN = {"gpt2", "falcon", "starcoder2", "gpt_neox", "opt", "phi", "gpt_bigcode"}
KNOWN = GATED | PLAIN
# LayerNorm (weight + bias) instead of RMSNorm.
LAYER_NORM = {"gpt2", "falcon", "starcoder2", "phi", "gpt_neox", "opt", "gpt_bigcode"}
# A learned position table (wpe) instead of rotary embeddings.
LEARNED_POSITIONS = {"gpt2", "opt", "gpt_bigcode"}
# tie_word_embeddings when config.json does not say (each configuration_<arch>.py default).
TIE_DEFAULT = {
    "gpt2": True, "gpt_bigcode": True, "gemma": True, "gemma2": True, "gemma3": True,
    "gemma3_text": True, "falcon": True, "starcoder2": True, "opt": True,
}
# head_dim when config.json does not say: fixed in the config class (not hidden/heads).
HEAD_DIM_DEFAULT = {"gemma": 256, "gemma2": 256, "gemma3_text": 256, "qwen3": 128}
# num_key_value_heads when absent where the class default is not num_attention_heads.
KV_DEFAULT = {"gemma3_text": 4, "gemma2": 4}
# Gemma 3's text_config usually names only a few fields; the rest are Gemma3TextConfig's
# defaults (configuration_gemma3.py).
GEMMA3_TEXT_DEFAULTS = {
    "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
    "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
    "head_dim": 256, "max_position_embeddings": 131072, "sliding_window": 4096,
    "tie_word_embeddings": True,
}
# LLaVA's text_config defaults to a LlamaConfig (configuration_llava.py).
NESTED_TEXT_DEFAULT_TYPE = {"gemma3": "gemma3_text", "llava": "llama", "mistral3": "mistral"}

# Caps: beyond these a value is a typo or a hostile file, not a model.
MAX_LAYERS = 1_000_000
MAX_HIDDEN = 10_000_000
MAX_VOCAB = 100_000_000
MAX_POSITION = 1_000_000_000
MAX_EXPERTS = 1_000_000

_DTYPES = {
    "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "fp16": "fp16", "half": "fp16",
    "float32": "fp32", "fp32": "fp32", "float": "fp32",
}


def dtype_name(value: Any) -> str | None:
    """'bf16' / 'fp16' / 'fp32' from a config torch_dtype ('bfloat16', 'torch.float16')."""
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    if v.startswith("torch."):
        v = v[len("torch."):]
    return _DTYPES.get(v)


# ---- validation helpers -------------------------------------------------------------

class _Reader:
    """Reads typed fields from one config dict, raising ModelSpecError naming the field."""

    def __init__(self, cfg: dict, source: str, prefix: str = ""):
        self.cfg = cfg
        self.source = source
        self.prefix = prefix

    def name(self, key: str) -> str:
        return self.prefix + key

    def first(self, *keys: str) -> tuple[str | None, Any]:
        """The first of ``keys`` present with a non-null value."""
        for k in keys:
            if k in self.cfg and self.cfg[k] is not None:
                return k, self.cfg[k]
        return None, None

    def int_(self, *keys: str, required: bool = False, default: int | None = None,
             low: int = 1, high: int | None = None, what: str = "") -> int | None:
        key, value = self.first(*keys)
        if key is None:
            if required:
                spelled = " / ".join(keys)
                raise ModelSpecError(f"missing {what or keys[0]} (looked for {spelled})",
                                     source=self.source, field=self.name(keys[0]))
            return default
        return self.check_int(key, value, low, high)

    def check_int(self, key: str, value: Any, low: int = 1, high: int | None = None) -> int:
        field = self.name(key)
        if isinstance(value, bool):
            raise ModelSpecError(f"expected a whole number, got the boolean {value!r}",
                                 source=self.source, field=field)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ModelSpecError(f"expected a whole number, got {value!r}",
                                     source=self.source, field=field)
            if not value.is_integer():
                raise ModelSpecError(f"expected a whole number, got {value!r}",
                                     source=self.source, field=field)
            value = int(value)
        if not isinstance(value, int):
            raise ModelSpecError(f"expected a whole number, got {type(value).__name__} {value!r:.60}",
                                 source=self.source, field=field)
        if value < low:
            raise ModelSpecError(f"must be at least {low}, got {value}", source=self.source, field=field)
        if high is not None and value > high:
            raise ModelSpecError(f"{value} is larger than any real model (limit {high:,})",
                                 source=self.source, field=field)
        return value

    def bool_(self, *keys: str, default: bool) -> bool:
        key, value = self.first(*keys)
        if key is None:
            return default
        if not isinstance(value, bool):
            raise ModelSpecError(f"expected true or false, got {value!r:.60}",
                                 source=self.source, field=self.name(key))
        return value

    def str_(self, key: str) -> str | None:
        value = self.cfg.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ModelSpecError(f"expected a string, got {type(value).__name__} {value!r:.60}",
                                 source=self.source, field=self.name(key))
        return value


def json_safe(value: Any, depth: int = 0) -> Any:
    """The plain-JSON part of a config value (drops NaN/inf, non-string keys, deep nests)."""
    if depth > 20:
        return None
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v, depth + 1) for k, v in value.items() if isinstance(k, str)}
    return None


# ---- the builder --------------------------------------------------------------------

def spec_from_config(config: dict, source: str, id: str | None = None,
                     name: str | None = None) -> ModelSpec:
    """A ModelSpec from a config.json dict. ``source`` names the file or URL in errors."""
    if not isinstance(config, dict):
        raise ModelSpecError(f"a config.json must be a JSON object, got {type(config).__name__}",
                             source=source)
    notes: list[str] = []
    confidence = "high"
    top = _Reader(config, source)
    model_type = top.str_("model_type")
    archs = config.get("architectures")
    architecture = ""
    if archs is not None:
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            raise ModelSpecError("expected a list of class names", source=source, field="architectures")
        architecture = archs[0] if archs else ""
    if "auto_map" in config:
        notes.append("auto_map (remote code) ignored: cardfit never runs code from a model repo")

    # Multimodal configs (Gemma 3, LLaVA, Mistral 3) nest the language model.
    cfg = config
    prefix = ""
    text_type = model_type
    nested = config.get("text_config")
    if nested is not None and not isinstance(nested, dict):
        raise ModelSpecError("expected a JSON object", source=source, field="text_config")
    if isinstance(nested, dict) and not any(
            k in config for k in ("hidden_size", "n_embd", "d_model")):
        prefix = "text_config."
        text_type = nested.get("model_type") or NESTED_TEXT_DEFAULT_TYPE.get(model_type or "")
        if text_type is not None and not isinstance(text_type, str):
            raise ModelSpecError("expected a string", source=source, field="text_config.model_type")
        cfg = dict(nested)
        if text_type == "gemma3_text":
            for k, v in GEMMA3_TEXT_DEFAULTS.items():
                cfg.setdefault(k, v)
        if "tie_word_embeddings" not in cfg and "tie_word_embeddings" in config:
            cfg["tie_word_embeddings"] = config["tie_word_embeddings"]
        notes.append(f"multimodal config ({model_type}): the language model is text_config"
                     f" ({text_type or 'no model_type'})")
    r = _Reader(cfg, source, prefix)
    family = text_type or ""

    if model_type is None:
        confidence = "low"
        notes.append("config.json has no model_type: shapes read best effort")
    elif family not in KNOWN:
        confidence = "low"
        notes.append(f"model_type '{family}' is not one cardfit knows: shapes read best effort"
                     " (a Llama-like layout is assumed)")

    # -- core shapes
    hidden = r.int_("hidden_size", "n_embd", "d_model", required=True, high=MAX_HIDDEN,
                    what="the hidden size")
    layers = r.int_("num_hidden_layers", "n_layer", "num_layers", "n_layers", required=True,
                    high=MAX_LAYERS, what="the number of layers")
    heads = r.int_("num_attention_heads", "n_head", "num_heads", "n_heads", required=True,
                   high=hidden, what="the number of attention heads")
    vocab = r.int_("vocab_size", "padded_vocab_size", required=True, high=MAX_VOCAB,
                   what="the vocabulary size")

    # -- heads: MQA / GQA
    kv_key, _ = r.first("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
    multi_query = r.bool_("multi_query", default=False)
    new_arch = r.bool_("new_decoder_architecture", default=False)
    if family == "falcon" and not new_arch:
        # configuration_falcon.py: num_kv_heads only counts with the new decoder architecture.
        kv_heads = 1 if multi_query else heads
    elif multi_query and kv_key is None:
        kv_heads = 1  # gpt_bigcode / Falcon multi-query: one shared K/V head
    else:
        kv_heads = r.int_("num_key_value_heads", "num_kv_heads", "n_head_kv",
                          "multi_query_group_num", default=KV_DEFAULT.get(family, heads),
                          high=MAX_HIDDEN)
    if kv_heads > heads or heads % kv_heads:
        raise ModelSpecError(
            f"{kv_heads} key/value heads do not divide {heads} attention heads",
            source=source, field=prefix + (kv_key or "num_key_value_heads"))

    hd_key, _ = r.first("head_dim")
    if hd_key is not None:
        head_dim = r.int_("head_dim", high=MAX_HIDDEN)
    elif family in HEAD_DIM_DEFAULT:
        head_dim = HEAD_DIM_DEFAULT[family]
        notes.append(f"head_dim not given: {head_dim}, the {family} config class default")
    else:
        if hidden % heads:
            hk, _ = r.first("num_attention_heads", "n_head", "num_heads", "n_heads")
            raise ModelSpecError(
                f"{heads} attention heads do not divide the hidden size {hidden}"
                " (and no head_dim is given)", source=source, field=prefix + (hk or "num_attention_heads"))
        head_dim = hidden // heads

    # -- MLP width
    inter_key, inter_val = r.first("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size",
                                   "d_ff", "ffn_embed_dim")
    if inter_key is None:
        if family in ("gpt2", "falcon", "gpt_bigcode"):
            # configuration_gpt2.py (n_inner null) / configuration_falcon.py
            # (ffn_hidden_size null): 4 * hidden
            intermediate = 4 * hidden
        else:
            intermediate = None
    else:
        intermediate = r.check_int(inter_key, inter_val, high=MAX_HIDDEN * 16)

    # -- MoE
    num_experts = r.int_("num_local_experts", "num_experts", "n_routed_experts", default=0,
                         low=0, high=MAX_EXPERTS)
    experts_per_token = 0
    moe_inter = 0
    shared_inter = 0
    first_dense = 0
    if num_experts:
        experts_per_token = r.int_("num_experts_per_tok", "num_experts_per_token", "top_k",
                                   "moe_top_k", required=True, high=num_experts,
                                   what="the number of experts per token")
        mi = r.int_("moe_intermediate_size", default=None, high=MAX_HIDDEN * 16)
        if mi is None:
            # Mixtral / OLMoE / PhiMoE: intermediate_size is each expert's width.
            if intermediate is None:
                raise ModelSpecError("missing the expert width (moe_intermediate_size or intermediate_size)",
                                     source=source, field=prefix + "intermediate_size")
            moe_inter, intermediate = intermediate, 0
        else:
            moe_inter = mi
        shared_inter = r.int_("shared_expert_intermediate_size", default=0, low=0, high=MAX_HIDDEN * 16)
        n_shared = r.int_("n_shared_experts", "num_shared_experts", default=0, low=0, high=MAX_EXPERTS)
        if n_shared and not shared_inter:
            # modeling_deepseek_v2.py: shared_experts = MLP(moe_intermediate_size * n_shared_experts)
            shared_inter = n_shared * moe_inter
        first_dense = r.int_("first_k_dense_replace", default=0, low=0, high=MAX_LAYERS)
        step = r.int_("decoder_sparse_step", default=1, low=1, high=MAX_LAYERS)
        mlp_only = cfg.get("mlp_only_layers") or []
        if not isinstance(mlp_only, list):
            raise ModelSpecError("expected a list of layer numbers", source=source,
                                 field=prefix + "mlp_only_layers")
        if mlp_only:
            idx = sorted(set(r.check_int("mlp_only_layers", v, low=0) for v in mlp_only))
            if idx == list(range(len(idx))):
                first_dense = max(first_dense, len(idx))
            else:
                confidence = _lower(confidence, "medium")
                notes.append("mlp_only_layers is not a leading run of layers: counted as MoE layers")
        if step != 1:
            confidence = _lower(confidence, "medium")
            notes.append(f"decoder_sparse_step {step}: only every {step}th layer is MoE;"
                         " counted as if every layer were")
        freq = r.int_("moe_layer_freq", default=1, low=1, high=MAX_LAYERS)
        if freq != 1 and family not in ("deepseek_v2", "deepseek_v3"):
            confidence = _lower(confidence, "medium")
            notes.append(f"moe_layer_freq {freq} not modelled: counted as every layer MoE")
        first_dense = min(first_dense, layers)
        if first_dense and intermediate is None:
            raise ModelSpecError("missing the dense layers' intermediate_size",
                                 source=source, field=prefix + "intermediate_size")
        if first_dense >= layers:
            notes.append("every layer is dense (first_k_dense_replace >= layers)")
    if intermediate is None:
        raise ModelSpecError("missing the MLP width (looked for intermediate_size / n_inner /"
                             " ffn_dim / ffn_hidden_size)", source=source, field=prefix + "intermediate_size")

    # -- multi-head latent attention (DeepSeek-V2/V3)
    kv_lora = r.int_("kv_lora_rank", default=0, low=0, high=MAX_HIDDEN)
    q_lora = rope_hd = nope_hd = v_hd = 0
    if kv_lora:
        q_lora = r.int_("q_lora_rank", default=0, low=0, high=MAX_HIDDEN)  # null: a plain q_proj
        rope_hd = r.int_("qk_rope_head_dim", required=True, high=MAX_HIDDEN)
        nope_hd = r.int_("qk_nope_head_dim", required=True, high=MAX_HIDDEN)
        v_hd = r.int_("v_head_dim", required=True, high=MAX_HIDDEN)
        head_dim = rope_hd + nope_hd
        kv_heads = heads  # HF caches full per-head K and V for MLA

    # -- the rest
    max_pos = r.int_("max_position_embeddings", "n_positions", "seq_length", "n_ctx",
                     "max_sequence_length", "max_seq_len", default=None, high=MAX_POSITION)
    if max_pos is None:
        max_pos = 2048 if family in ("llama", "falcon", "gpt_neox", "opt", "phi") else 4096
        notes.append(f"no max_position_embeddings: assuming {max_pos}")
    tie = r.bool_("tie_word_embeddings", default=TIE_DEFAULT.get(family, False))
    if "tie_word_embeddings" not in cfg and family not in KNOWN:
        notes.append("tie_word_embeddings not given: assuming an untied output head")

    sliding, sliding_layers = _sliding(r, family, layers)
    gated = family not in PLAIN
    norm = "layer" if family in LAYER_NORM else "rms"
    attn_bias, mlp_bias = _biases(r, family)
    norms_per_layer = 0
    if family == "falcon":
        # modeling_falcon.py FalconDecoderLayer: ln_attn + ln_mlp with the new architecture,
        # else input_layernorm (+ post_attention_layernorm unless parallel_attn).
        n_ln = r.int_("num_ln_in_parallel_attn", default=None, high=4)
        if new_arch:
            norms_per_layer = n_ln or 2
        else:
            norms_per_layer = 1 if r.bool_("parallel_attn", default=True) else 2
    elif family == "phi":
        norms_per_layer = 1  # modeling_phi.py: one input_layernorm, parallel attention/MLP

    extra = 0
    if family == "opt":
        proj = r.int_("word_embed_proj_dim", default=hidden, high=MAX_HIDDEN)
        if proj != hidden:  # modeling_opt.py: narrower embeddings + project_in / project_out
            confidence = _lower(confidence, "medium")
            notes.append(f"word_embed_proj_dim {proj} != hidden size: embeddings counted {hidden} wide")
    if prefix:
        vision, note = _vision_params(config, hidden, model_type or "", source)
        extra += vision
        if note:
            notes.append(note)
            confidence = _lower(confidence, "medium")

    raw_dtype = config.get("torch_dtype", config.get("dtype", cfg.get("torch_dtype", cfg.get("dtype"))))
    dtype = dtype_name(raw_dtype)
    if dtype is None:
        if raw_dtype is None:
            dtype = "fp32"
            notes.append("no torch_dtype: assuming float32 (transformers' default)")
        else:
            dtype = "bf16"
            notes.append(f"torch_dtype {raw_dtype!r:.40} not a bf16/fp16/fp32 type: assuming bf16")
    quant = config.get("quantization_config")
    if isinstance(quant, dict):
        method = quant.get("quant_method", "unknown")
        notes.append(f"quantization_config ({method!s:.40}): the published weights are quantized;"
                     " the counts are parameters")

    safe = json_safe({k: v for k, v in config.items() if k != "auto_map"})
    model_id = id or source
    return ModelSpec(
        id=model_id,
        name=name or _display_name(model_id),
        source=source,
        model_type=model_type or "unknown",
        architecture=architecture,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=vocab,
        max_position=max_pos,
        tie_embeddings=tie,
        gated_mlp=gated,
        attn_bias=attn_bias,
        mlp_bias=mlp_bias,
        norm=norm,
        learned_positions=family in LEARNED_POSITIONS,
        sliding_window=sliding,
        sliding_window_layers=sliding_layers,
        num_experts=num_experts,
        experts_per_token=experts_per_token,
        moe_intermediate_size=moe_inter,
        shared_expert_intermediate_size=shared_inter,
        first_dense_layers=first_dense,
        kv_lora_rank=kv_lora,
        q_lora_rank=q_lora,
        qk_rope_head_dim=rope_hd,
        qk_nope_head_dim=nope_hd,
        v_head_dim=v_hd,
        torch_dtype=dtype,
        norms_per_layer=norms_per_layer,
        extra_params=extra,
        confidence=confidence,
        notes=tuple(notes),
        config=safe,
    )


def _lower(current: str, to: str) -> str:
    order = ["high", "medium", "low"]
    return to if order.index(to) > order.index(current) else current


def _display_name(model_id: str) -> str:
    tail = model_id.replace("\\", "/").rstrip("/").split("/")[-1]
    if tail in ("config.json", ""):
        parts = model_id.replace("\\", "/").rstrip("/").split("/")
        tail = parts[-2] if len(parts) > 1 else model_id
    return tail


def _biases(r: _Reader, family: str) -> tuple[bool, bool]:
    """(bias on attention projections, bias on MLP linears) per modeling_<arch>.py."""
    if family in ("gpt2", "gpt_bigcode", "phi"):
        return True, True  # Conv1D / Linear layers all carry biases
    if family == "gpt_neox":
        b = r.bool_("attention_bias", default=True)
        return b, True
    if family == "opt":
        b = r.bool_("enable_bias", default=True)
        return b, b
    if family == "starcoder2":
        b = r.bool_("use_bias", default=True)
        return b, b
    if family == "falcon":
        b = r.bool_("bias", default=False)
        return b, b
    if family in ("qwen2", "qwen2_moe"):
        return True, False  # Qwen2Attention: q/k/v with bias, o_proj without
    attn = r.bool_("attention_bias", "qkv_bias", "bias", default=False)
    mlp = r.bool_("mlp_bias", default=False)
    return attn, mlp


def _sliding(r: _Reader, family: str, layers: int) -> tuple[int | None, int | None]:
    """(sliding_window, layers that use it); None layers = all of them."""
    key, value = r.first("sliding_window")
    if key is None:
        return None, None
    if isinstance(value, bool) or value == 0:
        return None, None
    window = r.check_int("sliding_window", value, high=MAX_POSITION)
    if family in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        # configuration_qwen2.py: the window applies only with use_sliding_window, from
        # layer max_window_layers on.
        if not r.bool_("use_sliding_window", default=False):
            return None, None
        first = r.int_("max_window_layers", default=0, low=0, high=MAX_LAYERS) or 0
        return window, max(0, layers - first)
    types = r.cfg.get("layer_types")
    if isinstance(types, list) and len(types) == layers and all(isinstance(t, str) for t in types):
        return window, sum(1 for t in types if t == "sliding_attention")
    if family == "gemma2":
        return window, (layers + 1) // 2  # modeling_gemma2.py: even layers slide
    if family == "gemma3_text" or family == "gemma3":
        pattern = r.int_("sliding_window_pattern", default=6, high=MAX_LAYERS)
        return window, sum(1 for i in range(layers) if (i + 1) % pattern)
    return window, None


def _vision_params(config: dict, text_hidden: int, model_type: str, source: str) -> tuple[int, str | None]:
    """Parameters of a SigLIP / CLIP vision tower and its projector, counted as
    modeling_siglip.py / modeling_clip.py and modeling_gemma3.py / modeling_llava.py build them."""
    vc = config.get("vision_config")
    if not isinstance(vc, dict):
        return 0, "no vision_config: a vision tower, if any, is not counted"
    vtype = vc.get("model_type")
    if model_type == "gemma3" and vtype is None:
        vtype = "siglip_vision_model"
    if vtype not in ("siglip_vision_model", "clip_vision_model"):
        return 0, f"vision tower ({vtype!s:.40}) not counted"
    r = _Reader(vc, source, "vision_config.")
    defaults = {"siglip_vision_model": (768, 3072, 12, 224, 16),
                "clip_vision_model": (768, 3072, 12, 224, 32)}[vtype]
    h = r.int_("hidden_size", default=defaults[0], high=MAX_HIDDEN)
    inter = r.int_("intermediate_size", default=defaults[1], high=MAX_HIDDEN * 16)
    n = r.int_("num_hidden_layers", default=defaults[2], high=MAX_LAYERS)
    image = r.int_("image_size", default=defaults[3], high=1_000_000)
    patch = r.int_("patch_size", default=defaults[4], high=image)
    ch = r.int_("num_channels", default=3, high=1024)
    patches = (image // patch) ** 2
    layer = 4 * (h * h + h) + (h * inter + inter) + (inter * h + h) + 2 * (2 * h)
    if vtype == "siglip_vision_model":
        emb = ch * patch * patch * h + h + patches * h  # conv with bias, position table
        out = emb + n * layer + 2 * h  # post_layernorm
        if r.bool_("vision_use_head", default=True):
            # SiglipMultiheadAttentionPoolingHead: probe, MultiheadAttention, layernorm, MLP
            out += h + (3 * h * h + 3 * h) + (h * h + h) + 2 * h + (h * inter + inter) + (inter * h + h)
    else:
        emb = h + ch * patch * patch * h + (patches + 1) * h  # class token, conv w/o bias, positions
        out = emb + 2 * h + n * layer + 2 * h  # pre_layrnorm, layers, post_layernorm
    if model_type == "gemma3":
        out += h * text_hidden + h  # mm_input_projection_weight + mm_soft_emb_norm
    elif model_type == "llava":
        out += (h * text_hidden + text_hidden) + (text_hidden * text_hidden + text_hidden)
    else:
        return out, f"{model_type} projector not counted"
    return out, None
