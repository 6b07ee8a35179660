"""resolve_model: path first, then the catalog, then a Hub id, else an error with
suggestions; and the `cardfit models` command."""

import json
import os
import pickle

import numpy as np
import pytest
from safetensors.numpy import save_file

import argparse

from cardfit.cli import models_cmd
from cardfit.core.errors import ModelSpecError
from cardfit.core.specs import hub
from cardfit.core.specs.catalog import catalog_specs
from cardfit.core.specs.resolve import resolve_model

CONFIG = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
          "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 100, "torch_dtype": "bfloat16"}


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_config_json_path(tmp_path):
    p = tmp_path / "my-config.json"
    p.write_text(json.dumps(CONFIG))
    s = resolve_model(str(p))
    assert s.source == str(p) and s.hidden_size == 64 and s.id == str(p)


def test_folder_path(tmp_path):
    folder = tmp_path / "tiny-qwen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    s = resolve_model(str(folder))
    assert s.name == "tiny-qwen" and s.model_type == "qwen2"
    assert resolve_model(str(folder / "config.json")).name == "tiny-qwen"


def test_index_json_means_its_folder(tmp_path):
    save_file({"a": np.zeros((2, 2), np.float32)}, str(tmp_path / "m-1.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "m-1.safetensors"}}))
    s = resolve_model(str(tmp_path / "model.safetensors.index.json"))
    assert s.exact_params == 4


def test_gguf_path(tmp_path):
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "qwen2")
    for add, v in ((w.add_block_count, 1), (w.add_embedding_length, 32), (w.add_feed_forward_length, 64),
                   (w.add_head_count, 2), (w.add_head_count_kv, 1), (w.add_context_length, 128)):
        add(v)
    w.add_tensor("token_embd.weight", np.zeros((10, 32), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    s = resolve_model(str(tmp_path / "m.gguf"))
    assert s.torch_dtype == "gguf" and s.vocab_size == 10 and s.exact_params == 320


def test_unsupported_extension(tmp_path):
    p = tmp_path / "weights.onnx"
    p.write_bytes(b"x")
    with pytest.raises(ModelSpecError, match="unsupported file type '.onnx'"):
        resolve_model(str(p))


def test_pickle_file_is_refused(tmp_path):
    p = tmp_path / "pytorch_model.bin"
    marker = tmp_path / "ran"
    p.write_bytes(pickle.dumps(os.system) + str(marker).encode())
    with pytest.raises(ModelSpecError, match="safetensors"):
        resolve_model(str(p))
    assert not marker.exists()


def test_missing_path_like_text(offline):
    for text in ("./nope.json", "/no/such/folder", "nope.gguf", "a/b/c"):
        with pytest.raises(ModelSpecError, match="no such file"):
            resolve_model(text)


def test_catalog_names(offline):
    assert resolve_model("meta-llama/Llama-3.1-8B").id == "meta-llama/Llama-3.1-8B"
    assert resolve_model("llama-3.1-8b").id == "meta-llama/Llama-3.1-8B"
    assert resolve_model("Qwen3-30B").id == "Qwen/Qwen3-30B-A3B"


def test_local_path_wins_over_catalog(tmp_path, monkeypatch, offline):
    folder = tmp_path / "meta-llama" / "Llama-3.1-8B"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    monkeypatch.chdir(tmp_path)
    s = resolve_model("meta-llama/Llama-3.1-8B")
    assert s.hidden_size == 64 and s.model_type == "qwen2"


def test_unknown_hub_id_goes_to_the_hub(offline):
    with pytest.raises(ModelSpecError) as info:
        resolve_model("someorg/somemodel")
    assert "cannot reach the Hugging Face Hub to read someorg/somemodel: offline" in str(info.value)


def test_hub_id_looking_like_a_catalog_model_adds_suggestions(offline):
    with pytest.raises(ModelSpecError) as info:
        resolve_model("meta-llama/Llama-3.1-8B-Turbo")
    assert "offline" in str(info.value) and "meta-llama/Llama-3.1-8B" in str(info.value)


def test_hub_success_through_resolve(monkeypatch, tmp_path):
    called = []
    monkeypatch.setattr(hub, "spec_from_hub", lambda t: called.append(t) or catalog_specs()[0])
    assert resolve_model("brandnew/model-x") is catalog_specs()[0] and called == ["brandnew/model-x"]


def test_garbage_lists_close_matches(offline):
    with pytest.raises(ModelSpecError) as info:
        resolve_model("qwen-3-8b")
    assert "Qwen/Qwen3-8B" in str(info.value) and "not a file, a catalog model or a Hub id" in str(info.value)
    with pytest.raises(ModelSpecError, match="no model given"):
        resolve_model("   ")


# ---- cardfit models ------------------------------------------------------------------

def main(argv):
    """`cardfit models` through its own register(); the other subcommands are other
    modules' business."""
    parser = argparse.ArgumentParser(prog="cardfit")
    models_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(catalog_specs()) >= 64
    llama = next(r for r in rows if r["id"] == "meta-llama/Llama-3.1-8B")
    assert llama["family"] == "Llama 3.1" and llama["num_layers"] == 32 and llama["num_kv_heads"] == 8
    assert abs(llama["params"]["total"] - 8.03e9) < 0.01e9 and llama["params_b"] == 8.03


def test_models_search_and_table(capsys):
    assert main(["models", "--search", "MIXTRAL"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("mistralai/")]
    assert len(lines) == 2 and "8x top-2" in lines[0] and "46.7B" in lines[0]
    assert out.splitlines()[0].split()[:3] == ["ID", "FAMILY", "PARAMS"]
    assert main(["models", "--json", "--search", "gemma-3"]) == 0
    assert {r["id"] for r in json.loads(capsys.readouterr().out)} == {
        "google/gemma-3-1b-pt", "google/gemma-3-4b-pt", "google/gemma-3-12b-pt", "google/gemma-3-27b-pt"}
    assert main(["models", "--search", "zzzz"]) == 0
    assert "no catalog model" in capsys.readouterr().out
