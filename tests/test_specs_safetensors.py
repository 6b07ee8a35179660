"""Safetensors headers: real files written by the safetensors library, and hand-crafted
hostile ones. Only headers are read; errors name the file and the field."""

import json
import os
import pickle
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.safetensors_header import (
    read_safetensors_folder,
    read_safetensors_header,
    read_safetensors_index,
    refuse_pickle,
)


def raw_file(path, header, data=b"", length=None):
    body = json.dumps(header).encode() if not isinstance(header, bytes) else header
    n = len(body) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + body + data)
    return path


def bad(path, field=None) -> ModelSpecError:
    with pytest.raises(ModelSpecError) as info:
        read_safetensors_header(path)
    assert str(path) in str(info.value)
    if field is not None:
        assert info.value.field == field, str(info.value)
    return info.value


def test_real_file_from_the_safetensors_library(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"embed.weight": np.zeros((10, 4), np.float32),
               "layer.weight": np.zeros((4, 4), np.float16),
               "q.weight": np.zeros((3, 5), np.int8),
               "empty": np.zeros((0, 7), np.float32)},
              str(path), metadata={"format": "pt"})
    h = read_safetensors_header(path)
    by_name = {t.name: t for t in h.tensors}
    assert by_name["embed.weight"].shape == (10, 4) and by_name["embed.weight"].dtype == "F32"
    assert by_name["embed.weight"].nbytes == 160 and by_name["q.weight"].nbytes == 15
    assert by_name["empty"].numel == 0
    assert h.params_by_dtype() == {"F32": 40, "F16": 16, "I8": 15}
    assert h.bytes_by_dtype() == {"F32": 160, "F16": 32, "I8": 15}
    assert h.total_params == 71 and h.total_bytes == 207
    assert h.metadata == {"format": "pt"}


def test_handmade_bf16_and_subbyte_dtypes(tmp_path):
    header = {"a": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
              "b": {"dtype": "F4", "shape": [3], "data_offsets": [12, 14]}}
    h = read_safetensors_header(raw_file(tmp_path / "x.safetensors", header, b"\0" * 14))
    assert h.params_by_dtype() == {"BF16": 6, "F4": 3} and h.total_bytes == 14


def test_only_the_header_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.safetensors"
    save_file({"w": np.zeros((256, 256), np.float32)}, str(path))
    reads = []
    real_open = open

    def spy_open(*a, **kw):
        fh = real_open(*a, **kw)
        real_read = fh.read

        class Wrapped:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                fh.close()

            def fileno(self):
                return fh.fileno()

            def read(self, n=-1):
                reads.append(n)
                return real_read(n)
        return Wrapped()

    monkeypatch.setattr("builtins.open", spy_open)
    read_safetensors_header(path)
    assert reads and all(0 <= n < 1000 for n in reads)  # never the 256 KiB of data


def test_truncated_below_eight_bytes(tmp_path):
    p = tmp_path / "t.safetensors"
    p.write_bytes(b"\x10\x00\x00")
    assert "truncated" in str(bad(p, "header length"))


def test_length_past_end_of_file(tmp_path):
    p = raw_file(tmp_path / "t.safetensors", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                 length=5000)
    assert "past the end" in str(bad(p, "header length"))


def test_huge_length_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "h.safetensors"
    p.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    assert "limit" in str(bad(p, "header length"))
    # a length under the file size but over the cap is refused too, without reading it
    p2 = tmp_path / "h2.safetensors"
    p2.write_bytes(struct.pack("<Q", 2048) + b" " * 4096)
    with pytest.raises(ModelSpecError, match="limit"):
        read_safetensors_header(p2, max_header=1024)


@pytest.mark.parametrize("body,word", [(b"{not json", "JSON"), (b"\xff\xfe{}", "UTF-8"),
                                       (b'{"a": NaN}', "JSON"), (b"[" * 100000 + b"]" * 100000, "")])
def test_bad_header_text(tmp_path, body, word):
    e = bad(raw_file(tmp_path / "j.safetensors", body), "header")
    assert word in str(e)


def test_header_must_be_an_object(tmp_path):
    assert "object" in str(bad(raw_file(tmp_path / "l.safetensors", [1, 2]), "header"))


@pytest.mark.parametrize("entry,field,word", [
    ("nope", "w", "object"),
    ({"dtype": "F17", "shape": [1], "data_offsets": [0, 4]}, "w.dtype", "unknown dtype"),
    ({"dtype": 3, "shape": [1], "data_offsets": [0, 4]}, "w.dtype", "unknown dtype"),
    ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "w.shape", "non-negative"),
    ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, "w.shape", "non-negative"),
    ({"dtype": "F32", "shape": "4", "data_offsets": [0, 4]}, "w.shape", "list"),
    ({"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}, "w.shape", "whole"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [0]}, "w.data_offsets", "begin, end"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "w.data_offsets", "after end"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}, "w.data_offsets", "past the data area"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, "w.data_offsets", "needs 8"),
    ({"dtype": "F32", "shape": [10**12], "data_offsets": [0, 4]}, "w.data_offsets", "needs"),
])
def test_bad_entries(tmp_path, entry, field, word):
    p = raw_file(tmp_path / "e.safetensors", {"w": entry}, b"\0" * 8)
    assert word in str(bad(p, field))


def test_overlapping_offsets(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
    assert "overlaps" in str(bad(raw_file(tmp_path / "o.safetensors", header, b"\0" * 8), "b.data_offsets"))


def test_bad_metadata(tmp_path):
    header = {"__metadata__": {"format": 1}}
    bad(raw_file(tmp_path / "m.safetensors", header), "__metadata__")


def test_unreadable_file(tmp_path):
    with pytest.raises(ModelSpecError, match="cannot read"):
        read_safetensors_header(tmp_path / "missing.safetensors")


def shard_model(tmp_path):
    save_file({"a": np.zeros((4, 4), np.float32)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": np.zeros((2,), np.float16)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"metadata": {"total_size": 68},
             "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return tmp_path / "model.safetensors.index.json", index


def test_sharded_index(tmp_path):
    index_path, _ = shard_model(tmp_path)
    h = read_safetensors_index(index_path)
    assert h.params_by_dtype() == {"F32": 16, "F16": 2} and len(h.files) == 2
    assert read_safetensors_folder(tmp_path).total_params == 18


def test_sharded_index_errors(tmp_path):
    index_path, index = shard_model(tmp_path)
    index["weight_map"]["c"] = "model-00002-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(ModelSpecError, match="not in it") as info:
        read_safetensors_index(index_path)
    assert info.value.field == "weight_map.c"
    index["weight_map"] = {"a": "../../etc/passwd.safetensors"}
    index_path.write_text(json.dumps(index))
    with pytest.raises(ModelSpecError, match="same folder"):
        read_safetensors_index(index_path)
    index["weight_map"] = {"a": "model-00009-of-00009.safetensors"}
    index_path.write_text(json.dumps(index))
    with pytest.raises(ModelSpecError, match="missing"):
        read_safetensors_index(index_path)
    index_path.write_text("[]")
    with pytest.raises(ModelSpecError, match="object"):
        read_safetensors_index(index_path)


def test_duplicate_tensor_across_files(tmp_path):
    save_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "one.safetensors"))
    save_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(ModelSpecError, match="both"):
        read_safetensors_folder(tmp_path)


class _Payload:
    """Unpickling this would create a marker file (what a malicious checkpoint does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickles_are_refused_unopened(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "pytorch_model.bin"
    evil.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ModelSpecError, match="safetensors") as info:
        refuse_pickle(evil)
    assert str(evil) in str(info.value)
    assert not os.path.exists(marker)
