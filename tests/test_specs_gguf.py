"""GGUF headers: tiny real files written with gguf.GGUFWriter and read back, and broken ones."""

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from cardfit.core.errors import ModelSpecError  # noqa: E402
from cardfit.core.specs.gguf_header import read_gguf, spec_from_gguf  # noqa: E402

H, FF, HEADS, KV, VOCAB, LAYERS = 64, 128, 4, 2, 100, 2


def write_gguf(path, *, arch="llama", experts=0, output=False, quant=False, skip=(), ffn=FF):
    w = gguf.GGUFWriter(str(path), arch)
    if "block_count" not in skip:
        w.add_block_count(LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(H)
    w.add_feed_forward_length(ffn)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant else gguf.LlamaFileType.MOSTLY_F16)
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(2)
    w.add_token_list([f"t{i}" for i in range(VOCAB)])
    kv = KV * H // HEADS
    w.add_tensor("token_embd.weight", np.zeros((VOCAB, H), np.float16))
    w.add_tensor("output_norm.weight", np.ones(H, np.float32))
    if output:
        w.add_tensor("output.weight", np.zeros((VOCAB, H), np.float16))
    for i in range(LAYERS):
        mats = {"attn_q": (H, H), "attn_k": (kv, H), "attn_v": (kv, H), "attn_output": (H, H)}
        if experts:
            w.add_tensor(f"blk.{i}.ffn_gate_inp.weight", np.zeros((experts, H), np.float32))
            for m in ("ffn_gate_exps", "ffn_up_exps"):
                w.add_tensor(f"blk.{i}.{m}.weight", np.zeros((experts, ffn, H), np.float16))
            w.add_tensor(f"blk.{i}.ffn_down_exps.weight", np.zeros((experts, H, ffn), np.float16))
        else:
            mats.update(ffn_gate=(ffn, H), ffn_up=(ffn, H), ffn_down=(H, ffn))
        for m, shape in mats.items():
            data = np.zeros(shape, np.float32)
            if quant:
                q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
                w.add_tensor(f"blk.{i}.{m}.weight", q, raw_shape=q.shape,
                             raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:
                w.add_tensor(f"blk.{i}.{m}.weight", data.astype(np.float16))
        for n in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{i}.{n}.weight", np.ones(H, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_tiny_llama_gguf_round_trip(tmp_path):
    path = write_gguf(tmp_path / "tiny-F16.gguf")
    info = read_gguf(path)
    assert info.architecture == "llama" and info.file_type == "F16" and info.vocab_size == VOCAB
    assert info.fields["block_count"] == LAYERS and info.fields["attention.head_count_kv"] == KV
    s = spec_from_gguf(path)
    assert (s.hidden_size, s.num_layers, s.num_heads, s.num_kv_heads, s.intermediate_size) == (H, LAYERS, HEADS, KV, FF)
    assert s.vocab_size == VOCAB and s.max_position == 256 and s.tie_embeddings  # no output.weight
    assert s.torch_dtype == "gguf" and s.source == f"gguf:{path}" and s.model_type == "llama"
    kv = KV * H // HEADS
    per_layer = 2 * H * H + 2 * kv * H + 3 * FF * H
    f16 = VOCAB * H + LAYERS * per_layer
    f32 = H + LAYERS * 2 * H
    assert s.weight_dtypes == {"F16": f16, "F32": f32}
    assert s.exact_params == f16 + f32 == s.param_counts().total
    assert s.param_counts().derived_total == s.exact_params  # the header and the shapes agree
    assert s.gguf_file_bytes == 2 * f16 + 4 * f32
    assert any("F16" in n for n in s.notes)


def test_quantized_tensor_bytes(tmp_path):
    path = write_gguf(tmp_path / "q8.gguf", quant=True, output=True)
    s = spec_from_gguf(path)
    info = read_gguf(path)
    assert info.file_type == "Q8_0" and not s.tie_embeddings
    kv = KV * H // HEADS
    q8_elems = LAYERS * (2 * H * H + 2 * kv * H + 3 * FF * H)
    assert s.weight_dtypes["Q8_0"] == q8_elems
    assert info.bytes_by_type["Q8_0"] == q8_elems // 32 * 34  # 32 weights per 34-byte block
    assert s.gguf_file_bytes == info.total_bytes == sum(info.bytes_by_type.values())


def test_moe_gguf_reads_as_mixtral(tmp_path):
    s = spec_from_gguf(write_gguf(tmp_path / "moe.gguf", experts=4))
    assert s.model_type == "mixtral" and s.num_experts == 4 and s.experts_per_token == 2
    assert s.moe_intermediate_size == FF
    assert s.exact_params == s.param_counts().derived_total


def test_missing_key_names_the_gguf_key(tmp_path):
    path = write_gguf(tmp_path / "nb.gguf", skip=("block_count",))
    with pytest.raises(ModelSpecError) as info:
        spec_from_gguf(path)
    assert info.value.field == "llama.block_count" and str(path) in str(info.value)


def test_bad_value_error_names_the_gguf_key(tmp_path):
    path = write_gguf(tmp_path / "ff.gguf", ffn=0)
    with pytest.raises(ModelSpecError) as info:
        spec_from_gguf(path)
    assert info.value.field == "llama.feed_forward_length"


@pytest.mark.parametrize("content", [b"", b"GGUF", b"not a gguf file at all, just text" * 4,
                                     b"GGUF\x03\x00\x00\x00" + b"\xff" * 40])
def test_broken_files_raise_model_spec_error(tmp_path, content):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelSpecError) as info:
        spec_from_gguf(path)
    assert str(path) in str(info.value)


def test_truncated_real_file(tmp_path):
    path = write_gguf(tmp_path / "cut.gguf")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(ModelSpecError, match="cut.gguf"):
        spec_from_gguf(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelSpecError, match="cannot read"):
        read_gguf(tmp_path / "none.gguf")
