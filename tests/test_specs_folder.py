"""Model folders: config.json + safetensors headers, sharded weights, pickle-only folders,
and a best-effort read from tensor names when config.json is missing."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.folder import spec_from_folder, spec_from_safetensors_file

H, FF, HEADS, KV, VOCAB, LAYERS, HD = 256, 512, 4, 2, 100, 2, 64
CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": H,
          "intermediate_size": FF, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
          "num_key_value_heads": KV, "vocab_size": VOCAB, "max_position_embeddings": 512,
          "torch_dtype": "bfloat16"}


def llama_tensors(dtype=np.float16, lm_head=True):
    kv = KV * HD
    t = {"model.embed_tokens.weight": np.zeros((VOCAB, H), dtype), "model.norm.weight": np.ones(H, dtype)}
    if lm_head:
        t["lm_head.weight"] = np.zeros((VOCAB, H), dtype)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t.update({p + "self_attn.q_proj.weight": np.zeros((H, H), dtype),
                  p + "self_attn.k_proj.weight": np.zeros((kv, H), dtype),
                  p + "self_attn.v_proj.weight": np.zeros((kv, H), dtype),
                  p + "self_attn.o_proj.weight": np.zeros((H, H), dtype),
                  p + "mlp.gate_proj.weight": np.zeros((FF, H), dtype),
                  p + "mlp.up_proj.weight": np.zeros((FF, H), dtype),
                  p + "mlp.down_proj.weight": np.zeros((H, FF), dtype),
                  p + "input_layernorm.weight": np.ones(H, dtype),
                  p + "post_attention_layernorm.weight": np.ones(H, dtype)})
    return t


def make_folder(tmp_path, config=CONFIG, tensors=None):
    tmp_path.mkdir(exist_ok=True)
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    if tensors is not None:
        save_file(tensors, str(tmp_path / "model.safetensors"))
    return tmp_path


def test_folder_with_config_and_safetensors(tmp_path):
    folder = make_folder(tmp_path / "tiny-llama", tensors=llama_tensors())
    s = spec_from_folder(folder)
    assert s.exact_params == s.param_counts().derived_total == s.param_counts().total
    assert s.weight_dtypes == {"fp16": s.exact_params}
    assert s.confidence == "high" and s.name == "tiny-llama" and s.source.endswith("config.json")
    assert any("exact parameter count" in n for n in s.notes)


def test_files_disagreeing_with_config_lower_confidence(tmp_path):
    t = llama_tensors()
    t["extra.big"] = np.zeros((400, 400), np.float16)
    s = spec_from_folder(make_folder(tmp_path / "m", tensors=t))
    assert s.exact_params == s.param_counts().derived_total + 160000
    assert s.confidence == "medium" and any("weight files hold" in n for n in s.notes)


def test_sharded_folder(tmp_path):
    folder = make_folder(tmp_path / "sharded")
    tensors = llama_tensors()
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    weight_map = {}
    for shard, ns in shards.items():
        save_file({n: tensors[n] for n in ns}, str(folder / shard))
        weight_map.update({n: shard for n in ns})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    s = spec_from_folder(folder)
    assert s.exact_params == s.param_counts().derived_total
    assert any("2 safetensors" in n for n in s.notes)


def test_gpt2_mask_buffers_are_not_parameters(tmp_path):
    cfg = {"model_type": "gpt2", "n_embd": 64, "n_layer": 1, "n_head": 4, "n_positions": 32, "vocab_size": 50}
    t = {"wte.weight": np.zeros((50, 64), np.float32), "wpe.weight": np.zeros((32, 64), np.float32),
         "h.0.attn.bias": np.zeros((1, 1, 32, 32), np.float32),
         "h.0.attn.c_attn.weight": np.zeros((64, 192), np.float32),
         "h.0.attn.c_attn.bias": np.zeros(192, np.float32)}
    s = spec_from_folder(make_folder(tmp_path / "g", cfg, t))
    assert s.exact_params == 50 * 64 + 32 * 64 + 64 * 192 + 192
    assert any("buffers" in n for n in s.notes)


def test_quantized_checkpoint_keeps_the_config_count(tmp_path):
    cfg = dict(CONFIG, quantization_config={"quant_method": "gptq", "bits": 4})
    s = spec_from_folder(make_folder(tmp_path / "q", cfg, {"x.qweight": np.zeros((8, 8), np.int32)}))
    assert s.exact_params is None and s.weight_dtypes == {"i32": 64}
    assert any("quantized" in n for n in s.notes)


def test_config_with_pickle_weights_only(tmp_path):
    folder = make_folder(tmp_path / "p")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    s = spec_from_folder(folder)
    assert s.exact_params is None and any("pickle" in n for n in s.notes)


def test_no_config_best_effort_from_tensor_names(tmp_path):
    folder = make_folder(tmp_path / "noconf", config=None, tensors=llama_tensors(lm_head=False))
    s = spec_from_folder(folder)
    assert s.confidence == "low"
    assert (s.vocab_size, s.hidden_size, s.num_layers) == (VOCAB, H, LAYERS)
    assert (s.num_heads, s.num_kv_heads, s.head_dim, s.intermediate_size) == (H // 128, 1, 128, FF)
    assert s.tie_embeddings and s.model_type == "llama"
    assert s.exact_params == s.param_counts().total
    assert any("guessed" in n for n in s.notes)


def test_no_config_without_embedding_is_an_error(tmp_path):
    folder = make_folder(tmp_path / "x", config=None, tensors={"a.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ModelSpecError, match="config.json"):
        spec_from_folder(folder)


def test_empty_and_pickle_only_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSpecError, match="not a model folder"):
        spec_from_folder(tmp_path / "empty")
    (tmp_path / "pk").mkdir()
    (tmp_path / "pk" / "model.pt").write_bytes(b"x")
    with pytest.raises(ModelSpecError, match="never"):
        spec_from_folder(tmp_path / "pk")


def test_bad_config_json_names_the_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text("{oops")
    with pytest.raises(ModelSpecError) as info:
        spec_from_folder(folder)
    assert str(folder / "config.json") in str(info.value)


def test_single_safetensors_file_uses_its_folder_config(tmp_path):
    folder = make_folder(tmp_path / "one", tensors=llama_tensors())
    s = spec_from_safetensors_file(folder / "model.safetensors")
    assert s.exact_params == s.param_counts().derived_total and s.confidence == "high"
