"""Hub ids: the offline path for real, and the success path with huggingface_hub's two
network functions replaced (CI has no network)."""

import json
import os
import subprocess
import sys

import pytest

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils import SafetensorsFileMetadata, SafetensorsRepoMetadata, TensorInfo

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs import hub
from cardfit.core.specs.hub import hub_error, is_hub_id, spec_from_hub

CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
          "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 100, "torch_dtype": "bfloat16",
          "auto_map": {"AutoModelForCausalLM": "evil.Model"}}


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _exc(cls, message="x"):
    """A huggingface_hub error instance without an HTTP response object."""
    e = cls.__new__(cls)
    Exception.__init__(e, message)
    return e


def test_offline_env_gives_the_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSpecError) as info:
        spec_from_hub("someorg/somemodel")
    msg = str(info.value)
    assert "cannot reach the Hugging Face Hub to read someorg/somemodel: offline" in msg
    assert "config.json" in msg and "catalog" in msg


def test_offline_in_a_fresh_process(tmp_path):
    """HF_HUB_OFFLINE=1 set before huggingface_hub is imported, as a user would."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path))
    code = ("from cardfit.core.specs.resolve import resolve_model\n"
            "from cardfit.core.errors import ModelSpecError\n"
            "try:\n    resolve_model('someorg/somemodel')\n"
            "except ModelSpecError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "cannot reach the Hugging Face Hub to read someorg/somemodel: offline" in out.stdout, out.stderr


def test_real_library_offline_error_is_mapped(tmp_path, monkeypatch):
    """The exception huggingface_hub itself raises in offline mode with an empty cache."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(Exception) as info:
        huggingface_hub.hf_hub_download("someorg/somemodel", "config.json", cache_dir=str(tmp_path))
    err = hub_error("someorg/somemodel", info.value)
    assert "cannot reach the Hugging Face Hub to read someorg/somemodel: offline" in str(err)


@pytest.mark.parametrize("exc,words", [
    (_exc(GatedRepoError), "gated"),
    (_exc(RepositoryNotFoundError), "no such model"),
    (_exc(LocalEntryNotFoundError), "offline"),
    (ConnectionError("connection refused"), "network error"),
    (TimeoutError("slow"), "timed out"),
])
def test_every_failure_is_one_model_spec_error(online, monkeypatch, exc, words):
    def fail(*a, **kw):
        raise exc

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    with pytest.raises(ModelSpecError) as info:
        spec_from_hub("org/name")
    assert words in str(info.value) and "org/name" in str(info.value)


def _metadata():
    f1 = SafetensorsFileMetadata(metadata={}, tensors={
        "model.embed_tokens.weight": TensorInfo(dtype="BF16", shape=[100, 64], data_offsets=(0, 12800)),
        "model.layers.0.self_attn.rotary_emb.inv_freq": TensorInfo(dtype="F32", shape=[8], data_offsets=(0, 32)),
    })
    f2 = SafetensorsFileMetadata(metadata={}, tensors={
        "lm_head.weight": TensorInfo(dtype="F32", shape=[100, 64], data_offsets=(0, 25600))})
    return SafetensorsRepoMetadata(metadata=None, sharded=True,
                                   weight_map={"model.embed_tokens.weight": "a", "lm_head.weight": "b"},
                                   files_metadata={"a": f1, "b": f2})


def test_success_path_reads_config_and_headers_only(online, tmp_path, monkeypatch):
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(CONFIG))
    calls = []

    def fake_download(repo_id, filename, **kw):
        calls.append((repo_id, filename, kw))
        return str(cfg_path)

    def fake_meta(self, repo_id, **kw):
        calls.append((repo_id, "safetensors-metadata", kw))
        return _metadata()

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "get_safetensors_metadata", fake_meta)
    s = spec_from_hub("org/tiny")
    assert s.id == "org/tiny" and s.name == "tiny"
    assert s.source == "https://huggingface.co/org/tiny/blob/main/config.json"
    assert s.hidden_size == 64 and s.exact_params == 12800 and s.weight_dtypes == {"bf16": 6400, "fp32": 6400}
    assert "auto_map" not in s.config
    assert [c[1] for c in calls] == ["config.json", "safetensors-metadata"]
    assert calls[0][2].get("etag_timeout") == hub.TIMEOUT_S
    assert all("trust_remote_code" not in c[2] for c in calls)


def test_missing_header_metadata_is_a_note(online, tmp_path, monkeypatch):
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(CONFIG))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **kw: str(cfg_path))

    def no_meta(self, *a, **kw):
        raise _exc(huggingface_hub.errors.NotASafetensorsRepoError)

    monkeypatch.setattr(huggingface_hub.HfApi, "get_safetensors_metadata", no_meta)
    s = spec_from_hub("org/tiny")
    assert s.exact_params is None and any("unavailable" in n for n in s.notes)


def test_bad_config_from_the_hub_names_the_url(online, tmp_path, monkeypatch):
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(dict(CONFIG, hidden_size="big")))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **kw: str(cfg_path))
    with pytest.raises(ModelSpecError) as info:
        spec_from_hub("org/tiny")
    assert "huggingface.co/org/tiny" in str(info.value) and info.value.field == "hidden_size"


def test_hub_id_pattern():
    assert is_hub_id("meta-llama/Llama-3.1-8B") and is_hub_id("org/name.v2")
    for bad in ("noslash", "a/b/c", "/abs", "org/..", "org/ name", "-org/x"):
        assert not is_hub_id(bad), bad
    with pytest.raises(ModelSpecError):
        spec_from_hub("not a hub id")
