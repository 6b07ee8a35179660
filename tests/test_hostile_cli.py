"""The hostile inputs of test_fuzz_specs / test_hostile_files through the command line:
exit code 2, exactly one line on stderr and nothing on stdout; with --json an ``error``
object on stdout naming the file and field, and nothing on stderr."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardfit.cli import main
from fuzzing import ARRAY, U8, U32, examples, safetensors_bytes, tiny_llama_gguf



def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


HOSTILE = {
    # name: (file name, bytes or a callable making the path, expected field or None)
    "truncated-safetensors": ("m.safetensors", b"\x10\x00\x00", "header length"),
    "header-2**63": ("m.safetensors", struct.pack("<Q", 2**63) + b"{}", "header length"),
    "header-past-end": ("m.safetensors", struct.pack("<Q", 4096) + b"{}", "header length"),
    "unknown-dtype": ("m.safetensors", safetensors_bytes(
        {"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, b"\0"), "w.dtype"),
    "non-utf8-header": ("m.safetensors", safetensors_bytes(b'{"\xff\xfe": 1}'), "header"),
    "wrong-magic-gguf": ("m.gguf", b"GGML" + b"\0" * 60, "magic"),
    "gguf-array-2**63": ("m.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"a"
                         + struct.pack("<IIQ", ARRAY, U8, 2**63) + b"\0" * 64, "a"),
    "gguf-zero-layers": ("m.gguf", tiny_llama_gguf(**{"llama.block_count": (U32, 0)}), "llama.block_count"),
    "gguf-heads-not-dividing": ("m.gguf", tiny_llama_gguf(**{"llama.attention.head_count_kv": (U32, 3)}),
                                "llama.attention.head_count_kv"),
    "config-nan": ("config.json", b'{"model_type": "llama", "hidden_size": NaN}', "config"),
    "config-negative-layers": ("config.json", json.dumps(
        {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": -2, "num_attention_heads": 4,
         "vocab_size": 10}).encode(), "num_hidden_layers"),
    "config-huge-vocab": ("config.json", json.dumps(
        {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "vocab_size": 10**40}).encode(), "vocab_size"),
    "config-nested": ("config.json", _nested(100_000), "config"),
    "config-not-object": ("config.json", b"[1, 2, 3]", None),
    "config-binary": ("config.json", bytes(range(256)), "config"),
}


def make(tmp_path, name):
    fname, content, field = HOSTILE[name]
    path = tmp_path / fname
    path.write_bytes(content)
    return path, field


@pytest.mark.parametrize("command", ["estimate", "plan"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_one_line_exit_2(tmp_path, capsys, command, name):
    path, _ = make(tmp_path, name)
    extra = ["--vram", "24"] if command == "plan" else []
    assert main([command, str(path), *extra]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"cardfit {command}: {path}"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_json_error_object(tmp_path, capsys, name):
    path, field = make(tmp_path, name)
    assert main(["estimate", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert err == ""
    doc = json.loads(out)
    assert set(doc) == {"error"}
    error = doc["error"]
    assert error["type"] == "model" and error["source"] == str(path)
    assert error["field"] == field
    assert str(path) in error["message"]


@pytest.mark.parametrize("kind", ["folder-named-gguf", "dangling-link", "missing", "long-name",
                                  "dev-zero-config"])
def test_hostile_paths_through_the_cli(tmp_path, capsys, kind):
    if kind == "folder-named-gguf":
        target = tmp_path / "x.gguf"
        target.mkdir()
    elif kind == "dangling-link":
        target = tmp_path / "config.json"
        target.symlink_to(tmp_path / "nowhere.json")
    elif kind == "missing":
        target = tmp_path / "none.safetensors"
    elif kind == "long-name":
        target = tmp_path / ("n" * 4000 + ".json")
    else:
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero")
        target = tmp_path / "config.json"
        target.symlink_to("/dev/zero")
    assert main(["estimate", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("cardfit estimate: ")
    assert main(["estimate", str(target), "--json"]) == 2
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out)["error"]["type"] == "model"


@examples(40)
@given(st.binary(max_size=80), st.sampled_from(["m.gguf", "m.safetensors", "config.json"]))
def test_random_bytes_through_the_cli(tmp_path_factory, raw, fname):
    path = tmp_path_factory.mktemp("cli") / fname
    path.write_bytes(raw)
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["estimate", str(path), "--json"])
    # random bytes may, rarely, be a tiny valid config; never a crash
    assert code in (0, 2)
    doc = json.loads(out.getvalue())
    assert ("error" in doc) == (code == 2)
    assert err.getvalue() == ""


def test_the_real_entry_point_exits_2_with_one_line(tmp_path):
    path = tmp_path / "evil.gguf"
    path.write_bytes(HOSTILE["gguf-array-2**63"][1])
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "cardfit", "estimate", str(path)], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "cardfit", "estimate", str(path), "--json"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["field"] == "a"
