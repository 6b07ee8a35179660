"""Property tests: hostile config.json, safetensors and GGUF content gives a ModelSpec or a
ModelSpecError naming the file (never another exception), within the per-example deadline.

A bounded run (fixed example counts, derandomized) is part of the normal suite; the longer
run is ``tools/fuzz_long.sh`` (see README.md, Reliability)."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardfit.core.errors import ModelSpecError
from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.gguf_header import spec_from_gguf
from cardfit.core.specs.hf_config import KNOWN, spec_from_config
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.core.specs.resolve import resolve_model
from cardfit.core.specs.safetensors_header import DTYPE_BITS, read_safetensors_header
from fuzzing import (
    ARRAY, STRING, U32, U64, examples, gguf_bytes, safetensors_bytes, tiny_llama_gguf,
    tiny_llama_kvs, valid_safetensors,
)

SOURCE = "fuzz/config.json"


def outcome(fn, *args, expect: str | None = None, **kw):
    """Run a reader: a ModelSpec (or other result) or a ModelSpecError that names the
    source on one line; any other exception fails the test."""
    try:
        return fn(*args, **kw)
    except ModelSpecError as exc:
        text = str(exc)
        if expect is not None:
            assert exc.source == expect, text
            assert text.startswith(expect), text
        assert exc.field is None or isinstance(exc.field, str)
        assert "\n" not in text and "\r" not in text, text
        assert exc.to_json()["type"] == "model"
        return exc


def usable(spec: ModelSpec) -> None:
    """A spec that was accepted is sane and can be estimated and serialised."""
    assert spec.hidden_size >= 1 and spec.num_layers >= 1 and spec.vocab_size >= 1
    assert spec.num_heads >= 1 and 1 <= spec.num_kv_heads <= spec.num_heads
    assert spec.num_heads % spec.num_kv_heads == 0
    json.dumps(spec.to_json(), allow_nan=False)
    for w in (Workload(), Workload(task="lora", batch=2, seq=512)):
        e = estimate(spec, w)
        assert e.total_bytes > 0 and isinstance(e.total_bytes, int)
        json.dumps(e.to_json(), allow_nan=False)


# -- config.json as a dict -----------------------------------------------------------------

SIZES = st.one_of(
    st.integers(-3, 300),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64 + 1, 10**30, 1_000_001, 100_000_001]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.text(max_size=8), st.lists(st.integers(-2, 64), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
SIZE_KEYS = [
    "hidden_size", "n_embd", "d_model", "num_hidden_layers", "n_layer", "num_attention_heads",
    "n_head", "num_key_value_heads", "num_kv_heads", "head_dim", "intermediate_size", "n_inner",
    "vocab_size", "max_position_embeddings", "num_local_experts", "num_experts",
    "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size",
    "n_shared_experts", "first_k_dense_replace", "kv_lora_rank", "q_lora_rank",
    "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "sliding_window", "max_window_layers",
    "sliding_window_pattern", "num_ln_in_parallel_attn", "word_embed_proj_dim",
]
FLAG_KEYS = ["tie_word_embeddings", "multi_query", "new_decoder_architecture", "use_sliding_window",
             "attention_bias", "mlp_bias", "parallel_attn", "vision_use_head"]
TYPES = st.one_of(st.sampled_from(sorted(KNOWN) + ["gemma3", "llava", "mistral3", "bert", ""]),
                  st.text(max_size=12), st.integers(), st.none())
ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                        max_leaves=12)


def base_config(h: int = 64, layers: int = 2, heads: int = 4, kv: int = 2, vocab: int = 128) -> dict:
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": h,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "intermediate_size": 4 * h, "vocab_size": vocab, "torch_dtype": "bfloat16"}


@st.composite
def hostile_configs(draw) -> dict:
    cfg = base_config() if draw(st.booleans()) else {}
    cfg["model_type"] = draw(TYPES)
    for key in draw(st.lists(st.sampled_from(SIZE_KEYS), max_size=8, unique=True)):
        cfg[key] = draw(SIZES)
    for key in draw(st.lists(st.sampled_from(FLAG_KEYS), max_size=3, unique=True)):
        cfg[key] = draw(st.one_of(st.booleans(), ANY_JSON))
    if draw(st.booleans()):
        cfg["torch_dtype"] = draw(st.one_of(st.sampled_from(["float8", "int4", "torch.bfloat16", "FLOAT16"]),
                                            ANY_JSON))
    if draw(st.integers(0, 5)) == 0:
        cfg["architectures"] = draw(ANY_JSON)
    if draw(st.integers(0, 4)) == 0:
        cfg["text_config"] = draw(st.one_of(st.just(base_config(heads=8, kv=8)), ANY_JSON))
        cfg.pop("hidden_size", None)
    if draw(st.integers(0, 5)) == 0:
        cfg["vision_config"] = draw(st.one_of(
            st.fixed_dictionaries({"model_type": st.sampled_from(["siglip_vision_model", "clip_vision_model"]),
                                   "patch_size": SIZES, "image_size": SIZES, "hidden_size": SIZES}),
            ANY_JSON))
    if draw(st.integers(0, 5)) == 0:
        cfg["layer_types"] = draw(ANY_JSON)
    if draw(st.integers(0, 6)) == 0:
        cfg["auto_map"] = {"AutoModel": "evil.Model"}
    return cfg


@examples(400)
@given(hostile_configs())
def test_hostile_config_dicts(cfg):
    result = outcome(spec_from_config, cfg, source=SOURCE, expect=SOURCE)
    if isinstance(result, ModelSpec):
        usable(result)
        assert "auto_map" not in result.config


@examples(60)
@given(heads=st.integers(1, 64), kv=st.integers(1, 64), hidden=st.integers(1, 4096))
def test_head_counts_that_do_not_divide_name_the_field(heads, kv, hidden):
    cfg = base_config(h=hidden, heads=heads, kv=kv)
    result = outcome(spec_from_config, cfg, source=SOURCE, expect=SOURCE)
    if heads > hidden:
        assert isinstance(result, ModelSpecError) and result.field == "num_attention_heads"
    elif kv > heads or heads % kv:
        assert isinstance(result, ModelSpecError) and result.field == "num_key_value_heads"
    elif hidden % heads:
        assert isinstance(result, ModelSpecError)
        assert result.field == "num_attention_heads"
    else:
        usable(result)


@pytest.mark.parametrize("key", ["num_hidden_layers", "num_attention_heads", "vocab_size", "hidden_size"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), 2**63, 1e300, "32", True, None, [32]])
def test_bad_sizes_name_the_field(key, value):
    cfg = base_config()
    cfg[key] = value
    exc = outcome(spec_from_config, cfg, source=SOURCE, expect=SOURCE)
    assert isinstance(exc, ModelSpecError) and exc.field == key


def test_unknown_architecture_reads_best_effort_with_low_confidence():
    cfg = base_config()
    cfg["model_type"] = "totally_new_arch"
    spec = spec_from_config(cfg, source=SOURCE)
    assert spec.confidence == "low" and any("totally_new_arch" in n for n in spec.notes)


# -- config.json as bytes on disk (through resolve_model, as the CLI and GUI call it) ------

JSON_TEXT = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    ANY_JSON.map(lambda v: json.dumps(v).encode()),
    hostile_configs().map(lambda c: json.dumps(c).encode()),
    st.integers(1, 200_000).map(lambda d: b"[" * d + b"]" * d),
    st.integers(1, 200_000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d),
    st.sampled_from([b'{"hidden_size": NaN}', b'{"vocab_size": Infinity}', b"\xef\xbb\xbf{}",
                     b'{"hidden_size": 1' + b"0" * 5000 + b"}", b"\xff\xfe{\x00}\x00", b"{}" * 3]),
)


@examples(250)
@given(JSON_TEXT)
def test_hostile_config_files(raw):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.json"
        path.write_bytes(raw)
        result = outcome(resolve_model, str(path), expect=str(path))
        if isinstance(result, ModelSpec):
            usable(result)


# -- safetensors ----------------------------------------------------------------------------

def entry_strategy():
    return st.fixed_dictionaries({}, optional={
        "dtype": st.one_of(st.sampled_from(sorted(DTYPE_BITS) + ["Q4", "f16", ""]), ANY_JSON),
        "shape": st.one_of(st.lists(st.integers(-2, 2**64), max_size=4), ANY_JSON),
        "data_offsets": st.one_of(st.lists(st.integers(-2, 2**64), min_size=2, max_size=2),
                                  st.lists(st.integers(0, 200), max_size=3), ANY_JSON),
    })


SAFETENSORS = st.one_of(
    # structured headers with hostile entries
    st.tuples(st.dictionaries(st.text(max_size=6), st.one_of(entry_strategy(), ANY_JSON), max_size=4),
              st.integers(0, 256)).map(lambda t: safetensors_bytes(t[0], b"\0" * t[1])),
    # a valid file truncated anywhere
    st.integers(0, len(valid_safetensors())).map(lambda n: valid_safetensors()[:n]),
    # a valid file with its length prefix replaced
    st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2, 2**63, 2**64 - 1, 100 * 2**20 + 1]))
    .map(lambda n: struct.pack("<Q", n) + valid_safetensors()[8:]),
    # random bytes after a plausible prefix, and plain random bytes
    st.binary(max_size=64).map(lambda b: struct.pack("<Q", len(b)) + b),
    st.binary(max_size=64),
    # non-UTF-8 and control-character names
    st.binary(min_size=1, max_size=8).map(
        lambda b: safetensors_bytes(b'{"' + b + b'": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}',
                                    b"\0\0")),
)


@examples(400)
@given(SAFETENSORS, st.integers(0, 3))
def test_hostile_safetensors(raw, flips):
    raw = bytearray(raw)
    for i in range(flips):  # a few corrupted bytes, deterministic per example
        if raw:
            raw[(i * 7919 + 13) % len(raw)] ^= 0x5A
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        path.write_bytes(bytes(raw))
        result = outcome(read_safetensors_header, path, expect=str(path))
        if not isinstance(result, ModelSpecError):
            assert result.total_bytes <= len(raw)
        result = outcome(resolve_model, str(path), expect=str(path))
        if isinstance(result, ModelSpec):
            usable(result)


# -- GGUF -------------------------------------------------------------------------------------

GGUF_TYPES = st.integers(0, 14)
SCALAR_VALUES = {0: st.integers(0, 255), 1: st.integers(-128, 127), 2: st.integers(0, 2**16 - 1),
                 3: st.integers(-(2**15), 2**15 - 1), 4: st.integers(0, 2**32 - 1),
                 5: st.integers(-(2**31), 2**31 - 1), 6: st.floats(width=32), 7: st.booleans(),
                 10: st.integers(0, 2**64 - 1), 11: st.integers(-(2**63), 2**63 - 1), 12: st.floats()}
KEYS = st.one_of(st.sampled_from([k for k, _, _ in tiny_llama_kvs()] + ["tokenizer.ggml.tokens",
                                                                        "general.alignment"]),
                 st.text(max_size=10), st.binary(max_size=6))


@st.composite
def gguf_kv(draw):
    key = draw(KEYS)
    vtype = draw(st.sampled_from(sorted(SCALAR_VALUES) + [STRING, ARRAY]))
    if vtype == STRING:
        return key, vtype, draw(st.one_of(st.text(max_size=8), st.binary(max_size=8)))
    if vtype == ARRAY:
        itype = draw(st.sampled_from(sorted(SCALAR_VALUES) + [STRING]))
        items = draw(st.lists(st.text(max_size=4) if itype == STRING else SCALAR_VALUES[itype], max_size=5))
        return key, vtype, (itype, items)
    return key, vtype, draw(SCALAR_VALUES[vtype])


@st.composite
def gguf_files(draw) -> bytes:
    kind = draw(st.integers(0, 4))
    valid = tiny_llama_gguf()
    if kind == 0:  # structured: random keys (and the llama ones, some overridden)
        kvs = tiny_llama_kvs() if draw(st.booleans()) else []
        kvs += draw(st.lists(gguf_kv(), max_size=5))
        tensors = draw(st.lists(st.tuples(
            st.sampled_from(["token_embd.weight", "output.weight", "blk.0.attn_q.weight", "x\n\x00"]),
            st.lists(st.one_of(st.integers(0, 128), st.just(2**63)), max_size=5),
            st.one_of(st.sampled_from([0, 1, 8, 12]), st.integers(0, 2**32 - 1)),
            st.one_of(st.integers(0, 64), st.just(2**64 - 1))), max_size=3))
        return gguf_bytes(kvs, tensors, b"\0" * draw(st.integers(0, 20_000)),
                          version=draw(st.sampled_from([3, 3, 2, 1, 4, 0x03000000])))
    if kind == 1:  # a valid file truncated anywhere
        return valid[:draw(st.integers(0, len(valid)))]
    if kind == 2:  # an 8-byte or 4-byte field of a valid header overwritten with an extreme
        pos = draw(st.integers(0, 400))
        width = draw(st.sampled_from([4, 8]))
        value = draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1])) % (2 ** (8 * width))
        return valid[:pos] + value.to_bytes(width, "little") + valid[pos + width:]
    if kind == 3:  # counts that claim more than the file holds
        return gguf_bytes(tiny_llama_kvs(), n_kv=draw(st.sampled_from([9, 100, 2**20, 2**63])),
                          n_tensors=draw(st.sampled_from([0, 1, 2**40, 2**64 - 1])))
    data = bytearray(valid)  # random bytes over a valid file
    for pos, b in draw(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 255)), min_size=1, max_size=6)):
        data[pos % len(data)] = b
    return bytes(data)


@examples(400)
@given(gguf_files())
def test_hostile_gguf(raw):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.gguf"
        path.write_bytes(raw)
        result = outcome(spec_from_gguf, path, expect=str(path))
        if isinstance(result, ModelSpec):
            usable(result)
            assert result.gguf_file_bytes <= len(raw)


@examples(80)
@given(st.sampled_from(["llama.block_count", "llama.embedding_length", "llama.attention.head_count",
                        "llama.attention.head_count_kv", "llama.feed_forward_length"]),
       st.one_of(st.sampled_from([0, 2**32 - 1, 3, 5, 7]), st.integers(0, 2**32 - 1)))
def test_gguf_bad_sizes_name_the_gguf_key(key, value):
    raw = tiny_llama_gguf(**{key: (U32, value)})
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.gguf"
        path.write_bytes(raw)
        result = outcome(spec_from_gguf, path, expect=str(path))
        if isinstance(result, ModelSpecError) and result.field and result.field.startswith("llama."):
            assert result.field in {key, "llama.attention.head_count", "llama.attention.head_count_kv",
                                    "llama.embedding_length"}
        elif isinstance(result, ModelSpec):
            usable(result)


def test_gguf_valid_baseline_reads():
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ok.gguf"
        path.write_bytes(tiny_llama_gguf())
        spec = spec_from_gguf(path)
    assert (spec.hidden_size, spec.num_layers, spec.num_heads, spec.num_kv_heads, spec.vocab_size) == (64, 2, 4, 2, 100)
    assert spec.exact_params == 6400 and spec.gguf_file_bytes == 12800


@pytest.mark.parametrize("itype,count", [(0, 2**63), (10, 2**61), (STRING, 2**63), (STRING, 9), (0, 10**6)])
def test_gguf_array_counts_past_the_end_fail_at_once(tmp_path, itype, count):
    # This input hung gguf.GGUFReader forever while growing its memory (an array of
    # 2**63 uint8 past the end: each empty read advanced nothing).
    raw = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"a"
           + struct.pack("<IIQ", ARRAY, itype, count) + b"\0" * 64)
    path = tmp_path / "evil.gguf"
    path.write_bytes(raw)
    exc = outcome(spec_from_gguf, path, expect=str(path))
    assert isinstance(exc, ModelSpecError) and exc.field == "a" and "truncated" in str(exc)


def test_gguf_non_utf8_and_control_character_names_stay_on_one_line(tmp_path):
    raw = gguf_bytes(tiny_llama_kvs() + [(b"bad\xff\nkey", U64, 1)],
                     [("token_embd.weight", [64, 100], 1, 0), ("x\ny", [1], 99, 0)], b"\0" * 12800)
    path = tmp_path / "names.gguf"
    path.write_bytes(raw)
    exc = outcome(spec_from_gguf, path, expect=str(path))
    assert isinstance(exc, ModelSpecError) and exc.field == "x\\ny" and "unknown tensor type 99" in str(exc)
