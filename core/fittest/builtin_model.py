"""cardfit's built-in decoder, for a fit-test interpreter without transformers: the same
tensors, in the same dtypes, alive at the same moments as in Hugging Face's
``modeling_llama.py`` family (and ``modeling_mixtral.py`` / ``modeling_qwen2_moe.py`` for
MoE), so its memory follows what a user's HF script would use:

- RMSNorm computes in fp32 and casts back (``LlamaRMSNorm``);
- rotary embeddings from an fp32 ``inv_freq`` buffer, cos/sin cast to the activations'
  dtype (``LlamaRotaryEmbedding``);
- attention through ``scaled_dot_product_attention`` with ``is_causal`` and no mask tensor,
  GQA without copying K/V where torch >= 2.5 (``sdpa_attention_forward``); "eager" builds
  the scores matrix and softmaxes in fp32 (``eager_attention_forward``);
- SwiGLU MLPs; MoE with an fp32 softmax router, top-k and a loop over the hit experts;
- tied or untied output head; the loss upcasts the logits to fp32 before cross-entropy
  (``loss_utils.ForCausalLMLoss``); ``generate`` keeps only the last position's logits
  (``logits_to_keep=1``) and grows a concatenating KV cache (``DynamicCache``).

Also ``add_lora`` (PEFT's layout: fp32 A/B as ``autocast_adapter_dtype`` makes them) and
``Lion``. Runs in the fit-test child: standard library and torch only (bitsandbytes for
quantized weights). Never imports cardfit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Architectures whose HF class uses LayerNorm and a plain (non-gated) GELU MLP.
LAYER_NORM_TYPES = {"gpt2", "gpt_bigcode", "gptj", "gpt_neox", "opt", "falcon", "phi", "starcoder2"}
LEARNED_POSITIONS = {"gpt2", "gpt_bigcode", "opt"}
# PretrainedConfig's tie_word_embeddings default per family (llama-likes set False).
TIED_BY_DEFAULT = {"gpt2", "gpt_bigcode", "gemma", "gemma2", "gemma3", "gemma3_text", "starcoder2", "opt"}
QKV_BIAS = {"qwen2", "qwen2_moe"}  # bias on q/k/v only (modeling_qwen2.py)
ALL_BIAS = {"gpt2", "gpt_bigcode", "gptj", "gpt_neox", "opt", "phi", "starcoder2"}
GEMMA = {"gemma", "gemma2", "gemma3", "gemma3_text"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Arch:
    """The shape facts the decoder needs, read from an HF config dict (several key
    spellings, as the families name them)."""

    def __init__(self, config: dict):
        c = dict(config)
        text = c.get("text_config")
        if isinstance(text, dict):  # multimodal wrappers (Gemma 3): the language model's config
            c = {**c, **text}
        self.model_type = str(c.get("model_type") or "llama")

        def get(*names, default=None):
            for n in names:
                if c.get(n) is not None:
                    return c[n]
            return default

        def need(*names, default=None) -> int:
            v = get(*names, default=default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 1:
                raise ValueError(f"config field '{names[0]}' must be a positive whole number, not {v!r}")
            return int(v)

        self.hidden = need("hidden_size", "n_embd", "d_model")
        self.layers = need("num_hidden_layers", "n_layer", "num_layers")
        self.heads = need("num_attention_heads", "n_head")
        kv_default = 1 if c.get("multi_query") else self.heads
        self.kv_heads = need("num_key_value_heads", "num_kv_heads", default=kv_default)
        if self.heads % self.kv_heads:
            raise ValueError(f"config: {self.heads} attention heads do not divide into "
                             f"{self.kv_heads} key/value heads")
        if c.get("kv_lora_rank"):  # DeepSeek MLA, approximated by full heads of qk width
            self.head_dim = need("qk_nope_head_dim") + need("qk_rope_head_dim")
        else:
            self.head_dim = need("head_dim", default=self.hidden // self.heads)
        self.intermediate = need("intermediate_size", "n_inner", "ffn_dim", default=4 * self.hidden)
        self.vocab = need("vocab_size")
        self.max_position = need("max_position_embeddings", "n_positions", default=4096)
        self.tie = bool(get("tie_word_embeddings", default=self.model_type in TIED_BY_DEFAULT))
        self.layer_norm = self.model_type in LAYER_NORM_TYPES
        self.gated = not self.layer_norm
        self.learned_positions = self.model_type in LEARNED_POSITIONS
        self.qkv_bias = bool(get("attention_bias", "qkv_bias", "bias",
                                 default=self.model_type in QKV_BIAS | ALL_BIAS))
        self.o_bias = self.model_type in ALL_BIAS
        self.mlp_bias = bool(get("mlp_bias", default=self.model_type in ALL_BIAS))
        self.eps = float(get("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps", default=1e-5))
        self.rope_theta = float(get("rope_theta", default=10000.0))
        self.act = str(get("hidden_activation", "hidden_act", "activation_function",
                           default="gelu" if self.layer_norm else "silu"))
        self.experts = int(get("num_local_experts", "num_experts", "n_routed_experts", default=0) or 0)
        self.top_k = int(get("num_experts_per_tok", default=2 if self.experts else 0) or 0)
        self.moe_intermediate = int(get("moe_intermediate_size", default=self.intermediate))
        shared = get("shared_expert_intermediate_size")
        if shared is None and get("n_shared_experts"):
            shared = int(get("n_shared_experts")) * self.moe_intermediate
        self.shared_intermediate = int(shared or 0)
        self.shared_gate = self.model_type == "qwen2_moe"  # sigmoid gate on the shared expert
        self.norm_topk = bool(get("norm_topk_prob", default=self.model_type in ("mixtral", "olmoe")))
        self.first_dense = int(get("first_k_dense_replace", default=0) or 0)
        self.scale_embeddings = self.model_type in GEMMA  # hidden * sqrt(hidden) (modeling_gemma.py)

    def describe(self) -> str:
        moe = f", {self.experts} experts top-{self.top_k}" if self.experts else ""
        return (f"built-in decoder ({self.model_type} layout): {self.layers} layers, hidden {self.hidden}, "
                f"{self.heads}/{self.kv_heads} heads x {self.head_dim}{moe}, "
                f"{'tied' if self.tie else 'untied'} head")


# ---- layers ------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, dtype, gemma: bool = False):
        super().__init__()
        # Gemma stores (weight - 1) and initialises it to zeros; the memory is the same.
        self.weight = nn.Parameter(torch.zeros(dim, dtype=dtype) if gemma else torch.ones(dim, dtype=dtype))
        self.eps = eps
        self.offset = 1.0 if gemma else 0.0

    def forward(self, x):
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return (h * (self.offset + self.weight.float())).to(dtype)
        return self.weight * h.to(dtype)


class Rotary(nn.Module):
    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, x, positions):
        freqs = positions[:, None].float() * self.inv_freq[None, :].to(positions.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def _rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def _apply_rotary(q, k, cos, sin):
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _repeat_kv(x, n: int):
    if n == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n, s, d).reshape(b, h * n, s, d)


_SDPA_GQA = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


class KVCache:
    """Per-layer K/V grown by concatenation, as transformers' ``DynamicCache`` does."""

    def __init__(self):
        self.k: list = []
        self.v: list = []

    def length(self) -> int:
        return self.k[0].shape[-2] if self.k else 0

    def update(self, layer: int, k, v):
        if layer >= len(self.k):
            self.k.append(k)
            self.v.append(v)
        else:
            self.k[layer] = torch.cat([self.k[layer], k], dim=-2)
            self.v[layer] = torch.cat([self.v[layer], v], dim=-2)
        return self.k[layer], self.v[layer]


class Attention(nn.Module):
    def __init__(self, a: Arch, index: int, dtype, attn: str):
        super().__init__()
        self.index, self.attn = index, attn
        self.heads, self.kv_heads, self.head_dim = a.heads, a.kv_heads, a.head_dim
        q, kv = a.heads * a.head_dim, a.kv_heads * a.head_dim
        self.q_proj = nn.Linear(a.hidden, q, bias=a.qkv_bias, dtype=dtype)
        self.k_proj = nn.Linear(a.hidden, kv, bias=a.qkv_bias, dtype=dtype)
        self.v_proj = nn.Linear(a.hidden, kv, bias=a.qkv_bias, dtype=dtype)
        self.o_proj = nn.Linear(q, a.hidden, bias=a.o_bias, dtype=dtype)

    def forward(self, x, rope, cache):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        if rope is not None:
            q, k = _apply_rotary(q, k, *rope)
        if cache is not None:
            k, v = cache.update(self.index, k, v)
        n_rep = self.heads // self.kv_heads
        causal = s > 1
        if self.attn == "eager":
            k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)
            scores = torch.matmul(q, k.transpose(2, 3)) * (self.head_dim ** -0.5)
            if causal:
                t = k.shape[-2]
                mask = torch.ones(s, t, dtype=torch.bool, device=x.device).tril(t - s)
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            out = torch.matmul(probs, v)
        elif _SDPA_GQA:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=n_rep > 1)
        else:
            k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out = out.transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
        return self.o_proj(out)


def _activation(name: str):
    name = name.lower()
    if name in ("silu", "swish"):
        return F.silu
    if name in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name.startswith("gelu"):
        return F.gelu
    if name == "relu":
        return F.relu
    return F.silu


class MLP(nn.Module):
    def __init__(self, hidden: int, width: int, gated: bool, bias: bool, act: str, dtype):
        super().__init__()
        self.gated = gated
        self.act = _activation(act)
        if gated:  # SwiGLU / GeGLU (LlamaMLP)
            self.gate_proj = nn.Linear(hidden, width, bias=bias, dtype=dtype)
            self.up_proj = nn.Linear(hidden, width, bias=bias, dtype=dtype)
            self.down_proj = nn.Linear(width, hidden, bias=bias, dtype=dtype)
        else:  # GPT-2 / Falcon style fc_in -> act -> fc_out
            self.fc_in = nn.Linear(hidden, width, bias=bias, dtype=dtype)
            self.fc_out = nn.Linear(width, hidden, bias=bias, dtype=dtype)

    def forward(self, x):
        if self.gated:
            return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
        return self.fc_out(self.act(self.fc_in(x)))


class MoE(nn.Module):
    """Top-k routed experts (MixtralSparseMoeBlock / Qwen2MoeSparseMoeBlock)."""

    def __init__(self, a: Arch, dtype):
        super().__init__()
        self.top_k, self.norm_topk = a.top_k, a.norm_topk
        self.gate = nn.Linear(a.hidden, a.experts, bias=False, dtype=dtype)
        self.experts = nn.ModuleList(MLP(a.hidden, a.moe_intermediate, True, False, a.act, dtype)
                                     for _ in range(a.experts))
        self.shared_expert = (MLP(a.hidden, a.shared_intermediate, True, False, a.act, dtype)
                              if a.shared_intermediate else None)
        self.shared_expert_gate = (nn.Linear(a.hidden, 1, bias=False, dtype=dtype)
                                   if a.shared_intermediate and a.shared_gate else None)

    def forward(self, x):
        b, s, h = x.shape
        flat = x.view(-1, h)
        weights = F.softmax(self.gate(flat), dim=1, dtype=torch.float)
        weights, chosen = torch.topk(weights, self.top_k, dim=-1)
        if self.norm_topk:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        weights = weights.to(x.dtype)
        out = torch.zeros_like(flat)
        hit = F.one_hot(chosen, num_classes=len(self.experts)).permute(2, 1, 0)  # expert, k, token
        for e in torch.nonzero(hit.sum(dim=(-1, -2))).flatten().tolist():
            slot, token = torch.where(hit[e])
            y = self.experts[e](flat[token]) * weights[token, slot, None]
            out.index_add_(0, token, y.to(x.dtype))
        if self.shared_expert is not None:
            shared = self.shared_expert(flat)
            if self.shared_expert_gate is not None:
                shared = torch.sigmoid(self.shared_expert_gate(flat)) * shared
            out = out + shared
        return out.view(b, s, h)


class DecoderLayer(nn.Module):
    def __init__(self, a: Arch, index: int, dtype, attn: str):
        super().__init__()

        def norm():
            if a.layer_norm:
                return nn.LayerNorm(a.hidden, eps=a.eps, dtype=dtype)
            return RMSNorm(a.hidden, a.eps, dtype, gemma=a.model_type in GEMMA)

        self.input_layernorm = norm()
        self.self_attn = Attention(a, index, dtype, attn)
        self.post_attention_layernorm = norm()
        if a.experts and index >= a.first_dense:
            self.mlp = MoE(a, dtype)
        else:
            self.mlp = MLP(a.hidden, a.intermediate, a.gated, a.mlp_bias, a.act, dtype)

    def forward(self, x, rope, cache):
        x = x + self.self_attn(self.input_layernorm(x), rope, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Output:
    def __init__(self, loss, logits):
        self.loss, self.logits = loss, logits


class Decoder(nn.Module):
    def __init__(self, a: Arch, dtype, attn: str):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden, dtype=dtype)
        if a.learned_positions:
            self.embed_positions = nn.Embedding(a.max_position, a.hidden, dtype=dtype)
        self.layers = nn.ModuleList(DecoderLayer(a, i, dtype, attn) for i in range(a.layers))
        self.norm = (nn.LayerNorm(a.hidden, eps=a.eps, dtype=dtype) if a.layer_norm
                     else RMSNorm(a.hidden, a.eps, dtype, gemma=a.model_type in GEMMA))


class BuiltinCausalLM(nn.Module):
    """``model.model.layers[i].self_attn.q_proj`` ... ``lm_head``: HF's module names, so
    LoRA targets and layer freezing find the same modules."""

    def __init__(self, a: Arch, dtype, attn: str = "sdpa", rope_device=None):
        super().__init__()
        self.arch = a
        self.model = Decoder(a, dtype, attn)
        self.lm_head = nn.Linear(a.hidden, a.vocab, bias=False, dtype=dtype)
        if a.tie:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.rotary = None if a.learned_positions else Rotary(a.head_dim, a.rope_theta)
        if self.rotary is not None and rope_device is not None:
            self.rotary.inv_freq = self.rotary.inv_freq.to(rope_device)
        self.gradient_checkpointing = False

    def forward(self, input_ids, labels=None, attention_mask=None, cache=None, logits_to_keep: int = 0,
                **_ignored):
        m = self.model
        x = m.embed_tokens(input_ids)
        if self.arch.scale_embeddings:
            x = x * torch.tensor(self.arch.hidden ** 0.5, dtype=x.dtype)
        past = cache.length() if cache is not None else 0
        positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
        rope = None
        if self.rotary is not None:
            rope = self.rotary(x, positions)
        else:
            x = x + m.embed_positions(positions)
        ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in m.layers:
            if ckpt:  # per decoder layer, non-reentrant (HF's gradient_checkpointing_enable)
                x = torch.utils.checkpoint.checkpoint(layer, x, rope, None, use_reentrant=False)
            else:
                x = layer(x, rope, cache)
        x = m.norm(x)
        if logits_to_keep:
            x = x[:, -logits_to_keep:, :]
        logits = self.lm_head(x)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return Output(loss, logits)

    def generate(self, input_ids, attention_mask=None, max_new_tokens: int = 1, min_new_tokens=None,
                 do_sample: bool = False, use_cache: bool = True, pad_token_id=None, **_ignored):
        """Greedy decoding of exactly ``max_new_tokens`` tokens (no end-of-sequence stop,
        as with ``min_new_tokens == max_new_tokens``)."""
        cache = KVCache() if use_cache else None
        tokens = input_ids
        out = self(input_ids, cache=cache, logits_to_keep=1)
        for i in range(max_new_tokens):
            # GenerationMixin copies the last logits to fp32 before choosing.
            nxt = out.logits[:, -1, :].to(copy=True, dtype=torch.float32).argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=-1)
            if i == max_new_tokens - 1:
                break
            out = self(nxt if use_cache else tokens, cache=cache, logits_to_keep=1)
        return tokens


def causal_lm_loss(logits, labels, ignore_index: int = -100):
    """transformers' ForCausalLMLoss: upcast to fp32, shift the labels by padding, mean CE."""
    logits = logits.float()
    labels = F.pad(labels.to(logits.device), (0, 1), value=ignore_index)
    shift = labels[..., 1:].contiguous()
    return F.cross_entropy(logits.view(-1, logits.size(-1)), shift.view(-1), ignore_index=ignore_index)


def build_builtin(torch_mod, config: dict, w: dict, device: str):
    """Returns (model, notes): the built-in decoder with random weights made on ``device``."""
    a = Arch(config)
    wdtype = w.get("dtype", "bf16")
    attn = w.get("attn", "sdpa")
    notes = [a.describe()]
    if attn == "flash":
        notes.append("attention: flash is not built in; using sdpa (whose CUDA kernel is flash where it can)")
        attn = "sdpa"
    else:
        notes.append(f"attention: {attn}")
    if wdtype in DTYPES:
        with torch.device(device):
            model = BuiltinCausalLM(a, DTYPES[wdtype], attn)
        with torch.no_grad():  # HF's _init_weights: normal(0, initializer_range=0.02)
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, float(config.get("initializer_range") or 0.02))
        return model, notes
    if wdtype not in ("int8", "nf4", "fp4"):
        raise ValueError(f"the fit test cannot build {wdtype} weights with random values; "
                         "test the same model with --dtype bf16 or nf4 instead")
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise RuntimeError(f"{wdtype} weights need the 'bitsandbytes' package in the fit-test "
                           f"interpreter ({exc})") from exc
    from hf_build import _quantized_linear, materialize

    rest = torch.float16 if wdtype == "int8" else torch.bfloat16
    with torch.device("meta"):
        model = BuiltinCausalLM(a, rest, attn)
    if model.rotary is not None:
        model.rotary.inv_freq = Rotary(a.head_dim, a.rope_theta).inv_freq.to(device)
    n = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or name == "lm_head":
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _quantized_linear(torch, bnb, module, wdtype, rest, device))
        n += 1
    materialize(torch, model, device)
    if a.tie:
        model.lm_head.weight = model.model.embed_tokens.weight
    notes.append(f"{n} linear layers quantized to {wdtype} with bitsandbytes {bnb.__version__}")
    return model, notes


# ---- LoRA --------------------------------------------------------------------------------

_LORA_NAMES = {"qv": ("q_proj", "v_proj"), "qkvo": ("q_proj", "k_proj", "v_proj", "o_proj")}


class LoRALinear(nn.Module):
    """base(x) + B(A(x)) * alpha / r, with A and B in fp32 (PEFT's LoraLayer with
    ``autocast_adapter_dtype=True``: the input is cast to the adapter's dtype and the sum
    back to the base output's dtype)."""

    def __init__(self, base: nn.Module, r: int, alpha: float):
        super().__init__()
        self.base_layer = base
        dev = next(base.parameters()).device
        self.lora_A = nn.Linear(base.in_features, r, bias=False, device=dev, dtype=torch.float32)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, device=dev, dtype=torch.float32)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def forward(self, x):
        result = self.base_layer(x)
        lora = self.lora_B(self.lora_A(x.to(self.lora_A.weight.dtype))) * self.scaling
        return (result + lora).to(result.dtype)


def add_lora(torch_mod, model: nn.Module, r: int, targets: str = "qv", alpha: float | None = None) -> int:
    """Freezes every parameter and wraps the target linears in ``LoRALinear`` (in place).
    ``targets``: qv (PEFT's default for Llama), qkvo, or all (PEFT's "all-linear": every
    linear but the output head). Returns the number of trainable parameters added."""
    if targets not in ("qv", "qkvo", "all"):
        raise ValueError(f"unknown LoRA targets {targets!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    alpha = 2 * r if alpha is None else alpha
    wanted = _LORA_NAMES.get(targets)
    added = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or name.endswith("lm_head") or ".lora_" in f".{name}":
            continue
        if ".experts." in name:  # transformers 5 fuses expert weights (not nn.Linear): PEFT skips them
            continue
        leaf = name.rsplit(".", 1)[-1]
        if wanted is not None and leaf not in wanted:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapped = LoRALinear(module, r, alpha)
        setattr(parent, child, wrapped)
        added += r * (module.in_features + module.out_features)
    if not added:
        raise RuntimeError(f"no linear layers found for LoRA targets '{targets}'")
    return added


# ---- Lion --------------------------------------------------------------------------------

class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2):
    one momentum buffer per parameter, the update is the sign of an interpolation."""

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"Lion: lr must be positive, not {lr}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["exp_avg"]
                if wd:
                    p.mul_(1 - lr * wd)
                update = m.mul(b1).add_(p.grad, alpha=1 - b1).sign_()
                p.add_(update, alpha=-lr)
                m.mul_(b2).add_(p.grad, alpha=1 - b2)
        return loss
