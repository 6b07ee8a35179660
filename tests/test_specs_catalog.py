"""The bundled catalog: provenance, sanity, parameter counts against the published sizes
and against the real transformers classes, and name lookup."""

import json
import re

import pytest

from cardfit.core.specs.catalog import (
    catalog_row,
    catalog_rows,
    catalog_specs,
    close_matches,
    find_model,
)
from cardfit.resources import resource_path

REQUIRED = """
meta-llama/Llama-2-7b-hf meta-llama/Llama-2-13b-hf meta-llama/Llama-2-70b-hf
meta-llama/Meta-Llama-3-8B meta-llama/Meta-Llama-3-70B meta-llama/Llama-3.1-8B
meta-llama/Llama-3.1-70B meta-llama/Llama-3.1-405B meta-llama/Llama-3.2-1B meta-llama/Llama-3.2-3B
meta-llama/Llama-3.3-70B-Instruct mistralai/Mistral-7B-v0.1 mistralai/Mistral-7B-v0.3
mistralai/Mistral-Nemo-Base-2407 mistralai/Mistral-Small-24B-Base-2501 mistralai/Mixtral-8x7B-v0.1
mistralai/Mixtral-8x22B-v0.1 Qwen/Qwen2.5-0.5B Qwen/Qwen2.5-1.5B Qwen/Qwen2.5-3B Qwen/Qwen2.5-7B
Qwen/Qwen2.5-14B Qwen/Qwen2.5-32B Qwen/Qwen2.5-72B Qwen/Qwen2.5-Coder-7B Qwen/Qwen3-0.6B
Qwen/Qwen3-1.7B Qwen/Qwen3-4B Qwen/Qwen3-8B Qwen/Qwen3-14B Qwen/Qwen3-32B Qwen/Qwen3-30B-A3B
Qwen/Qwen1.5-MoE-A2.7B Qwen/Qwen2-57B-A14B google/gemma-2-2b google/gemma-2-9b google/gemma-2-27b
google/gemma-3-1b-pt google/gemma-3-4b-pt google/gemma-3-12b-pt google/gemma-3-27b-pt
microsoft/Phi-3-mini-4k-instruct microsoft/Phi-3-medium-4k-instruct microsoft/Phi-3.5-mini-instruct
microsoft/phi-4 microsoft/Phi-4-mini-instruct deepseek-ai/DeepSeek-V2-Lite
deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
deepseek-ai/DeepSeek-R1-Distill-Qwen-14B deepseek-ai/DeepSeek-R1-Distill-Qwen-32B
deepseek-ai/DeepSeek-R1-Distill-Llama-8B deepseek-ai/DeepSeek-R1-Distill-Llama-70B
allenai/OLMo-2-1124-7B allenai/OLMo-2-1124-13B allenai/OLMoE-1B-7B-0924 openai-community/gpt2
openai-community/gpt2-medium openai-community/gpt2-large openai-community/gpt2-xl tiiuae/falcon-7b
tiiuae/falcon-40b bigcode/starcoder2-3b bigcode/starcoder2-7b bigcode/starcoder2-15b
HuggingFaceTB/SmolLM2-135M HuggingFaceTB/SmolLM2-360M HuggingFaceTB/SmolLM2-1.7B
TinyLlama/TinyLlama-1.1B-Chat-v1.0
""".split()

# Published sizes the brief names (params_b in the catalog must agree with them).
PUBLISHED = {"meta-llama/Llama-3.1-8B": 8.03e9, "Qwen/Qwen2.5-7B": 7.62e9,
             "mistralai/Mixtral-8x7B-v0.1": 46.7e9, "google/gemma-2-9b": 9.24e9,
             "openai-community/gpt2": 124e6, "microsoft/Phi-3-mini-4k-instruct": 3.82e9}


def test_catalog_file_is_plain_json_with_enough_models():
    doc = json.loads(resource_path("models.json").read_text(encoding="utf-8"))
    rows = doc["models"]
    assert len(rows) >= 64
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert set(REQUIRED) <= set(ids), sorted(set(REQUIRED) - set(ids))


@pytest.mark.parametrize("row", catalog_rows(), ids=lambda r: r["id"])
def test_row_is_traceable_to_its_config_json(row):
    assert set(row) >= {"id", "name", "family", "params_b", "source", "config"}
    assert row["source"] == f"https://huggingface.co/{row['id']}/blob/main/config.json"
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", row["id"])
    cfg = row["config"]
    assert isinstance(cfg.get("model_type"), str) and cfg.get("architectures")
    assert "auto_map" not in cfg


@pytest.mark.parametrize("spec", catalog_specs(), ids=lambda s: s.id)
def test_derived_parameter_count_matches_the_published_size(spec):
    published = catalog_row(spec.id)["params_b"] * 1e9
    total = spec.param_counts().total
    assert abs(total - published) / published <= 0.03, (spec.id, total, published)
    assert spec.confidence == "high", spec.notes
    assert spec.source.startswith("https://huggingface.co/")


@pytest.mark.parametrize("model_id,size", sorted(PUBLISHED.items()))
def test_headline_sizes(model_id, size):
    assert abs(find_model(model_id).param_counts().total - size) / size < 0.01


def test_moe_and_mla_rows_read_as_such():
    mixtral = find_model("mistralai/Mixtral-8x7B-v0.1")
    assert mixtral.num_experts == 8 and mixtral.experts_per_token == 2
    active = mixtral.param_counts().active
    assert 12.5e9 < active < 13.2e9  # Mistral's published 12.9B active
    q3 = find_model("Qwen/Qwen3-30B-A3B")
    assert 3.0e9 < q3.param_counts().active < 3.6e9  # "A3B" (3.3B active)
    ds = find_model("deepseek-ai/DeepSeek-V2-Lite")
    assert ds.kv_lora_rank == 512 and ds.first_dense_layers == 1 and ds.shared_expert_intermediate_size == 2816
    # published "2.4B activated", not counting the 0.2B input embedding table
    assert 2.3e9 < ds.param_counts().active - ds.param_counts().embedding < 2.5e9
    g3 = find_model("google/gemma-3-4b-pt")
    assert g3.extra_params > 0 and g3.num_heads == 8


def test_parameter_counts_equal_the_real_transformers_classes():
    """Every row is built as AutoModelForCausalLM on the meta device (no memory) and its
    parameters counted: model_spec.py must count exactly what transformers allocates."""
    pytest.importorskip("transformers")
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    transformers.logging.set_verbosity_error()
    drop = {"auto_map", "architectures", "transformers_version", "_name_or_path",
            "quantization_config", "torch_dtype", "dtype"}
    wrong = []
    for spec in catalog_specs():
        cfg = {k: v for k, v in spec.config.items() if k not in drop}
        model_type = cfg.pop("model_type")
        hf_cfg = AutoConfig.for_model(model_type, **cfg)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(hf_cfg)
        real = sum(p.numel() for p in model.parameters())
        if real != spec.param_counts().derived_total:
            wrong.append((spec.id, real, spec.param_counts().derived_total))
    assert not wrong


def test_find_model_by_id_tail_prefix_and_case():
    assert find_model("meta-llama/Llama-3.1-8B").id == "meta-llama/Llama-3.1-8B"
    assert find_model("META-LLAMA/llama-3.1-8b").id == "meta-llama/Llama-3.1-8B"
    assert find_model("llama-3.1-8b").id == "meta-llama/Llama-3.1-8B"
    assert find_model("  Llama-3.1-405  ").id == "meta-llama/Llama-3.1-405B"  # unique prefix
    assert find_model("TinyLlama").id == "TinyLlama/TinyLlama-1.1B-Chat-v1.0"  # org prefix, unique
    assert find_model("Qwen2.5-") is None  # ambiguous prefix
    assert find_model("gpt2").id == "openai-community/gpt2"  # exact tail beats prefix
    assert find_model("no-such-model") is None
    assert find_model("") is None


def test_close_matches_suggest_catalog_ids():
    near = close_matches("qwen3-8")
    assert "Qwen/Qwen3-8B" in near
    assert "meta-llama/Llama-3.1-8B" in close_matches("lama-3.1-8B")


def test_catalog_is_loaded_once():
    assert catalog_specs()[0] is catalog_specs()[0]
    assert catalog_rows() is catalog_rows()
