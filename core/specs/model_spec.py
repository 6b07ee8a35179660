"""ModelSpec: the architecture facts the estimator and the fit test need, whatever the
model came from (catalog row, config.json, model folder, GGUF header, Hub id).

Parameter counts follow the module layout of Hugging Face transformers'
``modeling_<arch>.py`` files (named per field below), so that a spec built from a
config.json counts exactly what ``AutoModelForCausalLM.from_config`` allocates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Confidence = Literal["high", "medium", "low"]


@dataclass(frozen=True)
class LinearShape:
    """One linear layer kind inside a decoder layer: ``count`` copies of in x out per layer."""

    name: str  # HF module name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, ...
    in_features: int
    out_features: int
    count: int = 1  # copies per layer (experts)
    bias: bool = False
    expert: bool = False  # routed-expert weight (only experts_per_token of them run per token)

    @property
    def params(self) -> int:
        return self.count * (self.in_features * self.out_features + (self.out_features if self.bias else 0))


@dataclass(frozen=True)
class ModelSpec:
    id: str  # catalog id, path or Hub id, as the user named it
    name: str  # display name
    source: str  # where the figures come from: a config.json URL, a file path, "gguf:<path>"
    model_type: str  # HF config model_type: llama, qwen2, gemma2, gpt2, ...
    architecture: str  # HF architectures[0], e.g. LlamaForCausalLM
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # dense MLP width (0 when every layer is MoE)
    vocab_size: int
    max_position: int = 4096
    tie_embeddings: bool = False
    gated_mlp: bool = True  # SwiGLU / GeGLU (gate, up, down) vs plain fc_in/fc_out (GPT-2, Falcon, StarCoder2)
    attn_bias: bool = False  # bias on q/k/v (Qwen2, GPT-2, StarCoder2)
    mlp_bias: bool = False
    norm: Literal["rms", "layer"] = "rms"
    learned_positions: bool = False  # GPT-2 style wpe table of max_position x hidden
    sliding_window: int | None = None
    # Mixture of experts (Mixtral, Qwen MoE, OLMoE, DeepSeek): 0 experts = dense.
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0  # total width of the always-on expert(s)
    first_dense_layers: int = 0  # DeepSeek first_k_dense_replace: leading layers with a dense MLP
    # DeepSeek-V2 multi-head latent attention; 0 = ordinary attention.
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Published storage dtype (config torch_dtype / dtype), e.g. bf16.
    torch_dtype: str = "bf16"
    # Exact counts when read from weight files (safetensors / GGUF headers); they win over
    # the config-derived count. weight_dtypes maps dtype name -> parameter count.
    exact_params: int | None = None
    weight_dtypes: dict[str, int] = field(default_factory=dict)
    gguf_file_bytes: int | None = None  # tensor data bytes of a GGUF file (its quantized size)
    # Layers whose attention is limited to ``sliding_window`` (Gemma 2: every other layer,
    # Gemma 3: 5 of 6); None = every layer when sliding_window is set.
    sliding_window_layers: int | None = None
    # Hidden-size norms per decoder layer; 0 = by model_type (4 for Gemma 2/3, else 2).
    # Falcon-7B and Phi-2 (parallel attention) have 1.
    norms_per_layer: int = 0
    # Parameters outside the decoder stack and the embeddings that the HF class allocates
    # too: a vision tower and its multimodal projector (Gemma 3, LLaVA).
    extra_params: int = 0
    confidence: Confidence = "high"
    notes: tuple[str, ...] = ()
    # The config.json fields the spec was built from (what the fit test rebuilds the real
    # HF class from). Never code: plain JSON values only.
    config: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # ---- derived shapes -------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def kv_dim(self) -> int:
        """Width of K (and of V) per token per layer as stored in the KV cache."""
        if self.kv_lora_rank:
            # HF's DeepseekV2 caches full K and V per head (not the latent).
            return self.num_heads * (self.qk_nope_head_dim + self.qk_rope_head_dim)
        return self.num_kv_heads * self.head_dim

    @property
    def v_dim(self) -> int:
        if self.kv_lora_rank:
            return self.num_heads * self.v_head_dim
        return self.num_kv_heads * self.head_dim

    def attention_linears(self) -> list[LinearShape]:
        """q/k/v/o projections of one layer, named as in HF (for LoRA targets)."""
        h, q = self.hidden_size, self.num_heads * self.head_dim
        if self.kv_lora_rank:
            # modeling_deepseek_v2.py: q_proj (or q_a/q_b), kv_a_proj_with_mqa, kv_b_proj, o_proj
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            out: list[LinearShape] = []
            if self.q_lora_rank:
                out += [LinearShape("q_a_proj", h, self.q_lora_rank),
                        LinearShape("q_b_proj", self.q_lora_rank, self.num_heads * qk)]
            else:
                out.append(LinearShape("q_proj", h, self.num_heads * qk))
            out += [
                LinearShape("kv_a_proj_with_mqa", h, self.kv_lora_rank + self.qk_rope_head_dim),
                LinearShape("kv_b_proj", self.kv_lora_rank,
                            self.num_heads * (self.qk_nope_head_dim + self.v_head_dim)),
                LinearShape("o_proj", self.num_heads * self.v_head_dim, h),
            ]
            return out
        kv = self.num_kv_heads * self.head_dim
        b = self.attn_bias
        return [
            LinearShape("q_proj", h, q, bias=b),
            LinearShape("k_proj", h, kv, bias=b),
            LinearShape("v_proj", h, kv, bias=b),
            # o_proj carries a bias only where every linear does (GPT-2, StarCoder2), not in Qwen2.
            LinearShape("o_proj", q, h, bias=self.attn_bias and self.mlp_bias),
        ]

    def mlp_linears(self, layer: int = -1) -> list[LinearShape]:
        """MLP linears of one layer; ``layer`` matters for DeepSeek's leading dense layers."""
        h = self.hidden_size
        dense = not self.is_moe or (0 <= layer < self.first_dense_layers)

        def block(width: int, count: int = 1, expert: bool = False) -> list[LinearShape]:
            if self.gated_mlp:
                return [LinearShape("gate_proj", h, width, count, self.mlp_bias, expert),
                        LinearShape("up_proj", h, width, count, self.mlp_bias, expert),
                        LinearShape("down_proj", width, h, count, self.mlp_bias, expert)]
            return [LinearShape("up_proj", h, width, count, self.mlp_bias, expert),
                    LinearShape("down_proj", width, h, count, self.mlp_bias, expert)]

        if dense:
            return block(self.intermediate_size)
        out = block(self.moe_intermediate_size, self.num_experts, expert=True)
        out.append(LinearShape("router", h, self.num_experts))
        if self.shared_expert_intermediate_size:
            out += [replace(s, name="shared_" + s.name) for s in block(self.shared_expert_intermediate_size)]
            if self.model_type == "qwen2_moe":  # modeling_qwen2_moe.py: sigmoid gate on the shared expert
                out.append(LinearShape("shared_expert_gate", h, 1))
        return out

    def layer_linears(self, layer: int = -1) -> list[LinearShape]:
        return self.attention_linears() + self.mlp_linears(layer)

    def moe_layers(self) -> int:
        return max(0, self.num_layers - self.first_dense_layers) if self.is_moe else 0

    def layer_norm_params(self) -> int:
        """Norm parameters of one decoder layer (each modeling_<arch>.py's norms)."""
        h = self.hidden_size
        per_norm = h * (2 if self.norm == "layer" else 1)  # LayerNorm: weight + bias
        n = self.norms_per_layer or (4 if self.model_type in _FOUR_NORMS else 2)
        out = n * per_norm
        if self.kv_lora_rank:  # MLA's own RMSNorms on the latents (modeling_deepseek_v2.py)
            out += self.kv_lora_rank + (self.q_lora_rank or 0)
        if self.model_type in _HEAD_QK_NORM:  # q_norm / k_norm over one head (Qwen3, Gemma 3)
            out += 2 * self.head_dim
        elif self.model_type in _FULL_QK_NORM:  # over the whole q / k width (OLMo 2, OLMoE)
            out += (self.num_heads + self.num_kv_heads) * self.head_dim
        return out

    def param_counts(self) -> "ParamCounts":
        """Counts by role; ``exact_params`` from weight files scales the total when known."""
        h = self.hidden_size
        final_norm = h * (2 if self.norm == "layer" else 1)
        embed = self.vocab_size * h
        pos = 0
        if self.learned_positions:
            # modeling_opt.py: OPTLearnedPositionalEmbedding keeps 2 extra rows (offset 2).
            pos = (self.max_position + (2 if self.model_type == "opt" else 0)) * h
        head = 0 if self.tie_embeddings else self.vocab_size * h
        if self.model_type == "phi" and not self.tie_embeddings:
            head += self.vocab_size  # modeling_phi.py: lm_head has a bias
        linear = 0
        expert = 0
        active_expert = 0
        # Layers come in at most two kinds (leading dense layers, then MoE layers): count
        # one of each kind and multiply, so absurd layer counts cost nothing.
        moe = self.moe_layers()
        for layer, copies in ((0, self.num_layers - moe), (self.num_layers - 1, moe)):
            if copies <= 0:
                continue
            for s in self.layer_linears(layer):
                linear += copies * s.params
                if s.expert:
                    expert += copies * s.params
                    active_expert += copies * (s.params // max(1, s.count)) * self.experts_per_token
        layer_norms = self.num_layers * self.layer_norm_params()
        total = embed + pos + head + linear + layer_norms + final_norm + self.extra_params
        return ParamCounts(
            total=self.exact_params or total,
            embedding=embed + pos,
            lm_head=head,
            linear=linear,
            norms=layer_norms + final_norm,
            experts=expert,
            active=total - expert + active_expert,
            derived_total=total,
            other=self.extra_params,
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = asdict(self.param_counts())
        return d


@dataclass(frozen=True)
class ParamCounts:
    total: int  # every parameter (exact from weight files when known)
    embedding: int  # token (+ learned position) embeddings
    lm_head: int  # 0 when tied to the embedding
    linear: int  # linear weights inside decoder layers (what bitsandbytes quantizes)
    norms: int
    experts: int  # routed-expert weights (subset of linear)
    active: int  # parameters touched per token (MoE: only experts_per_token experts)
    derived_total: int  # the count derived from the config, for comparison with exact
    other: int = 0  # outside the decoder: vision tower and projector (ModelSpec.extra_params)


# Per-architecture norm layouts, from transformers' modeling_<arch>.py.
_FOUR_NORMS = {"gemma2", "gemma3", "gemma3_text"}  # input, post_attention, pre/post_feedforward
_HEAD_QK_NORM = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text"}
_FULL_QK_NORM = {"olmo2", "olmoe"}
