"""spec_from_config: every config.json spelling, and errors that name the field."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.hf_config import spec_from_config
from cardfit.core.specs.model_spec import ModelSpec

SRC = "/models/x/config.json"

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
         "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 256,
         "torch_dtype": "bfloat16"}


def spec(cfg, **kw):
    return spec_from_config(cfg, source=SRC, **kw)


def error(cfg) -> ModelSpecError:
    with pytest.raises(ModelSpecError) as info:
        spec(cfg)
    assert SRC in str(info.value)
    return info.value


# ---- spellings -------------------------------------------------------------------------

def test_llama_style_fields_and_hand_count():
    s = spec(LLAMA)
    assert (s.hidden_size, s.num_layers, s.num_heads, s.num_kv_heads, s.head_dim) == (64, 2, 4, 2, 16)
    assert (s.intermediate_size, s.vocab_size, s.max_position) == (160, 100, 256)
    assert s.gated_mlp and s.norm == "rms" and not s.tie_embeddings  # LlamaConfig default: untied
    assert s.torch_dtype == "bf16" and s.confidence == "high" and s.architecture == "LlamaForCausalLM"
    # embed + head + per layer (q, k, v, o, gate, up, down, 2 RMSNorms) + final norm
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 160 + 2 * 64
    assert s.param_counts().total == 2 * 100 * 64 + 2 * per_layer + 64


def test_gpt2_style_spelling_defaults_and_biases():
    cfg = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128,
           "n_inner": None, "vocab_size": 100}
    s = spec(cfg)
    assert (s.hidden_size, s.num_layers, s.num_heads, s.max_position) == (64, 2, 4, 128)
    assert s.intermediate_size == 4 * 64  # n_inner null -> 4 * hidden
    assert s.tie_embeddings and s.learned_positions and not s.gated_mlp and s.norm == "layer"
    assert s.attn_bias and s.mlp_bias
    assert s.torch_dtype == "fp32" and any("torch_dtype" in n for n in s.notes)
    # modeling_gpt2.py: wte, wpe, per block ln_1, c_attn, c_proj, ln_2, c_fc, c_proj; ln_f
    block = 2 * 64 + (64 * 192 + 192) + (64 * 64 + 64) + 2 * 64 + (64 * 256 + 256) + (256 * 64 + 64)
    assert s.param_counts().total == 100 * 64 + 128 * 64 + 2 * block + 2 * 64


def test_falcon_multi_query_and_new_decoder_architecture():
    base = {"model_type": "falcon", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 8, "vocab_size": 100}
    mq = spec(dict(base, multi_query=True, new_decoder_architecture=False, parallel_attn=True))
    assert mq.num_kv_heads == 1 and mq.intermediate_size == 256 and mq.norms_per_layer == 1
    assert mq.tie_embeddings and not mq.gated_mlp and mq.norm == "layer"
    # num_kv_heads only counts with the new decoder architecture
    old = spec(dict(base, multi_query=False, num_kv_heads=2))
    assert old.num_kv_heads == 8
    new = spec(dict(base, new_decoder_architecture=True, num_kv_heads=2))
    assert new.num_kv_heads == 2 and new.norms_per_layer == 2
    assert spec(dict(base, bias=True)).attn_bias


def test_explicit_head_dim_wins_over_hidden_over_heads():
    s = spec(dict(LLAMA, hidden_size=60, num_attention_heads=4, head_dim=32))
    assert s.head_dim == 32
    q = next(x for x in s.attention_linears() if x.name == "q_proj")
    assert q.out_features == 128


def test_qwen3_head_dim_default_is_the_config_class_default():
    cfg = dict(LLAMA, model_type="qwen3")
    cfg.pop("num_key_value_heads")
    s = spec(cfg)
    assert s.head_dim == 128 and s.num_kv_heads == 4  # absent kv heads = heads


def test_sliding_window_spellings():
    assert spec(dict(LLAMA, model_type="mistral", sliding_window=4096)).sliding_window == 4096
    q = dict(LLAMA, model_type="qwen2", sliding_window=32768, use_sliding_window=False)
    assert spec(q).sliding_window is None
    q2 = spec(dict(q, use_sliding_window=True, max_window_layers=1))
    assert q2.sliding_window == 32768 and q2.sliding_window_layers == 1
    g2 = spec(dict(LLAMA, model_type="gemma2", num_hidden_layers=5, head_dim=16, sliding_window=4096))
    assert g2.sliding_window_layers == 3  # even layers slide
    assert spec(dict(LLAMA, sliding_window=None)).sliding_window is None


def test_qwen2_qkv_bias_only():
    s = spec(dict(LLAMA, model_type="qwen2"))
    names = {x.name: x.bias for x in s.attention_linears()}
    assert names == {"q_proj": True, "k_proj": True, "v_proj": True, "o_proj": False}


def test_starcoder2_use_bias_and_layer_norm():
    s = spec(dict(LLAMA, model_type="starcoder2", use_bias=True))
    assert s.attn_bias and s.mlp_bias and s.norm == "layer" and not s.gated_mlp and s.tie_embeddings


def test_torch_dtype_spellings():
    assert spec(dict(LLAMA, torch_dtype="float16")).torch_dtype == "fp16"
    assert spec(dict(LLAMA, torch_dtype="torch.float32")).torch_dtype == "fp32"
    cfg = dict(LLAMA)
    cfg.pop("torch_dtype")
    assert spec(dict(cfg, dtype="bfloat16")).torch_dtype == "bf16"
    odd = spec(dict(LLAMA, torch_dtype="float8_e4m3fn"))
    assert odd.torch_dtype == "bf16" and any("float8" in n for n in odd.notes)


def test_mixtral_experts_use_intermediate_size():
    s = spec(dict(LLAMA, model_type="mixtral", num_local_experts=8, num_experts_per_tok=2))
    assert s.is_moe and s.num_experts == 8 and s.moe_intermediate_size == 160 and s.intermediate_size == 0
    pc = s.param_counts()
    assert pc.experts == 2 * 8 * 3 * 64 * 160
    assert pc.active == pc.total - pc.experts + pc.experts // 8 * 2


def test_qwen2_moe_shared_expert_and_gate():
    s = spec(dict(LLAMA, model_type="qwen2_moe", num_experts=4, num_experts_per_tok=2,
                  moe_intermediate_size=32, shared_expert_intermediate_size=96))
    names = [x.name for x in s.mlp_linears(0)]
    assert "shared_expert_gate" in names and "shared_gate_proj" in names and "router" in names
    assert s.shared_expert_intermediate_size == 96


def test_mlp_only_layers_leading_run_is_dense():
    s = spec(dict(LLAMA, model_type="qwen3_moe", num_experts=4, num_experts_per_tok=2,
                  moe_intermediate_size=32, mlp_only_layers=[0]))
    assert s.first_dense_layers == 1 and s.moe_layers() == 1


def test_moe_config_whose_layers_are_all_dense_counts_dense_mlps():
    s = spec(dict(LLAMA, model_type="deepseek_v2", n_routed_experts=4, num_experts_per_tok=2,
                  moe_intermediate_size=32, first_k_dense_replace=5))
    assert s.first_dense_layers == 2 and s.moe_layers() == 0
    assert s.param_counts().experts == 0
    assert s.param_counts().total == spec(LLAMA).param_counts().total


def test_deepseek_mla_shared_experts_first_dense():
    cfg = {"model_type": "deepseek_v2", "hidden_size": 64, "intermediate_size": 160,
           "moe_intermediate_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
           "num_key_value_heads": 4, "n_routed_experts": 8, "n_shared_experts": 2,
           "num_experts_per_tok": 2, "first_k_dense_replace": 1, "kv_lora_rank": 16,
           "q_lora_rank": None, "qk_rope_head_dim": 8, "qk_nope_head_dim": 16, "v_head_dim": 16,
           "vocab_size": 100, "auto_map": {"AutoModelForCausalLM": "modeling_deepseek.X"}}
    s = spec(cfg)
    assert s.kv_lora_rank == 16 and s.q_lora_rank == 0
    assert s.kv_dim == 4 * (16 + 8) and s.v_dim == 4 * 16
    assert s.shared_expert_intermediate_size == 2 * 32 and s.first_dense_layers == 1 and s.moe_layers() == 2
    names = [x.name for x in s.attention_linears()]
    assert names == ["q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
    assert "auto_map" not in s.config and any("auto_map" in n for n in s.notes)


def test_gemma3_nested_text_config_defaults_and_vision_tower():
    cfg = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
           "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
                           "model_type": "gemma3_text", "sliding_window": 1024},
           "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                             "model_type": "siglip_vision_model", "num_attention_heads": 16,
                             "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False},
           "torch_dtype": "bfloat16"}
    s = spec(cfg)
    assert s.model_type == "gemma3" and s.architecture == "Gemma3ForConditionalGeneration"
    assert (s.hidden_size, s.num_heads, s.num_kv_heads, s.head_dim, s.vocab_size) == (2560, 8, 4, 256, 262208)
    assert s.tie_embeddings and s.sliding_window == 1024 and s.sliding_window_layers == 29
    assert s.extra_params > 400e6  # SigLIP tower + projector (~417M)
    assert any("text_config" in n for n in s.notes)
    assert s.config["text_config"]["hidden_size"] == 2560  # the original nesting is kept


def test_llava_style_nesting_uses_text_part():
    cfg = {"model_type": "llava", "text_config": dict(LLAMA, model_type="llama"),
           "vision_config": {"model_type": "clip_vision_model", "hidden_size": 32,
                             "intermediate_size": 64, "num_hidden_layers": 2,
                             "image_size": 28, "patch_size": 14}}
    s = spec(cfg)
    assert s.hidden_size == 64 and s.extra_params > 0 and s.model_type == "llava"


def test_config_is_json_safe_and_copied():
    cfg = dict(LLAMA, rope_theta=math.nan, rope_scaling={"factor": 8.0})
    s = spec(cfg)
    json.dumps(s.config, allow_nan=False)
    assert s.config["rope_theta"] is None and s.config["rope_scaling"] == {"factor": 8.0}
    cfg["hidden_size"] = 1
    assert s.config["hidden_size"] == 64


def test_unknown_model_type_is_best_effort_not_an_error():
    s = spec(dict(LLAMA, model_type="brand_new_arch"))
    assert s.confidence == "low" and any("brand_new_arch" in n for n in s.notes)
    s2 = spec({k: v for k, v in LLAMA.items() if k != "model_type"})
    assert s2.confidence == "low" and s2.model_type == "unknown"


def test_whole_floats_are_accepted():
    assert spec(dict(LLAMA, hidden_size=64.0)).hidden_size == 64


# ---- validation ------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "vocab_size", "intermediate_size"])
def test_missing_required_field_is_named(field):
    cfg = dict(LLAMA)
    cfg.pop(field)
    assert error(cfg).field == field


@pytest.mark.parametrize("value", [True, "4096", 64.5, math.nan, math.inf, 0, -64, [64], None])
def test_bad_hidden_size_values(value):
    e = error(dict(LLAMA, hidden_size=value))
    assert e.field == "hidden_size"


@pytest.mark.parametrize("field,value", [("num_hidden_layers", 10**7), ("hidden_size", 10**8),
                                         ("vocab_size", 10**9), ("num_attention_heads", 65)])
def test_absurd_sizes(field, value):
    assert error(dict(LLAMA, **{field: value})).field == field


def test_heads_must_divide_hidden_without_head_dim():
    e = error(dict(LLAMA, num_attention_heads=5, num_key_value_heads=5))
    assert e.field == "num_attention_heads" and "divide" in str(e)


def test_kv_heads_must_divide_heads():
    e = error(dict(LLAMA, num_key_value_heads=3))
    assert e.field == "num_key_value_heads"
    e = error(dict(LLAMA, num_key_value_heads=8))
    assert e.field == "num_key_value_heads"


def test_experts_per_token_checked():
    e = error(dict(LLAMA, model_type="mixtral", num_local_experts=4, num_experts_per_tok=8))
    assert e.field == "num_experts_per_tok"
    e = error(dict(LLAMA, model_type="mixtral", num_local_experts=4))
    assert e.field == "num_experts_per_tok"


def test_nested_errors_name_the_nested_field():
    e = error({"model_type": "gemma3", "text_config": {"hidden_size": "wide"}})
    assert e.field == "text_config.hidden_size"


def test_non_dict_config_and_bad_types():
    with pytest.raises(ModelSpecError):
        spec_from_config([1, 2], source=SRC)
    assert error(dict(LLAMA, model_type=7)).field == "model_type"
    assert error(dict(LLAMA, architectures="LlamaForCausalLM")).field == "architectures"
    assert error(dict(LLAMA, tie_word_embeddings="yes")).field == "tie_word_embeddings"


def test_error_json_has_source_and_field():
    e = error(dict(LLAMA, vocab_size=-1))
    assert e.to_json() == {"type": "model", "message": str(e), "source": SRC, "field": "vocab_size"}


def test_absurd_layer_count_costs_no_time():
    s = spec(dict(LLAMA, num_hidden_layers=999_999))
    assert s.param_counts().total > 999_999 * 64 * 64


_values = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**9), st.floats(allow_nan=True),
                    st.text(max_size=5), st.lists(st.integers(), max_size=3),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(set(LLAMA) | {
    "n_embd", "n_layer", "n_head", "head_dim", "num_local_experts", "num_experts_per_tok",
    "kv_lora_rank", "text_config", "multi_query", "sliding_window", "first_k_dense_replace",
    "moe_intermediate_size", "mlp_only_layers", "tie_word_embeddings"})), _values), st.booleans())
def test_fuzzed_configs_give_a_spec_or_a_model_spec_error(overrides, start_from_llama):
    cfg = dict(LLAMA) if start_from_llama else {}
    cfg.update(overrides)
    try:
        s = spec(cfg)
    except ModelSpecError:
        return
    assert isinstance(s, ModelSpec)
    assert s.param_counts().total > 0
    json.dumps(s.to_json(), allow_nan=False)
