"""Shared pieces of the fuzz tests (tests/test_fuzz_*.py, tests/test_hostile_*.py).

Two hypothesis profiles:
* ``ci`` (the default): a fixed number of examples, derandomized (the same inputs on every
  run, so CI is stable), a per-example deadline (the "bounded time" promise);
* ``long``: tools/fuzz_long.sh sets CARDFIT_FUZZ=long: many more examples, random seeds.
CARDFIT_FUZZ_EXAMPLES overrides the example count of the long profile.
"""

from __future__ import annotations

import json
import os
import struct
from datetime import timedelta

from hypothesis import HealthCheck, settings

_common = dict(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture],
               deadline=timedelta(seconds=3), print_blob=True)
settings.register_profile("ci", max_examples=120, derandomize=True, database=None, **_common)
settings.register_profile("long", max_examples=int(os.environ.get("CARDFIT_FUZZ_EXAMPLES", "5000")),
                          derandomize=False, **_common)
PROFILE = os.environ.get("CARDFIT_FUZZ", "ci")


def examples(n: int):
    """``@examples(n)``: the profile's settings with ``n`` examples in CI (the long profile
    keeps its own, larger count)."""
    if PROFILE == "long":
        return settings(settings.get_profile("long"))
    return settings(settings.get_profile("ci"), max_examples=n)


# -- safetensors -------------------------------------------------------------------------------

def safetensors_bytes(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    """A .safetensors file: u64 little-endian header length, the header, the data area."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(raw) if length is None else length
    return struct.pack("<Q", n) + raw + data


def valid_safetensors() -> bytes:
    header = {"__metadata__": {"format": "pt"},
              "model.embed_tokens.weight": {"dtype": "F16", "shape": [8, 4], "data_offsets": [0, 64]},
              "model.layers.0.mlp.up_proj.weight": {"dtype": "BF16", "shape": [4, 4],
                                                    "data_offsets": [64, 96]}}
    return safetensors_bytes(header, b"\0" * 96)


# -- GGUF (written by hand, so a test can say exactly what each byte claims) ----------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_CODES = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?",
          U64: "Q", I64: "q", F64: "d"}


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def gguf_value(vtype: int, value) -> bytes:
    if vtype == STRING:
        return gguf_string(value)
    if vtype == ARRAY:
        itype, items = value
        return struct.pack("<IQ", itype, len(items)) + b"".join(gguf_value(itype, v) for v in items)
    return struct.pack("<" + _CODES[vtype], value)


def gguf_bytes(kvs: list[tuple[str | bytes, int, object]], tensors: list[tuple[str, list[int], int, int]] = (),
               data: bytes = b"", version: int = 3, n_kv: int | None = None,
               n_tensors: int | None = None, magic: bytes = b"GGUF") -> bytes:
    """A GGUF file. ``kvs``: (key, value type, value); ``tensors``: (name, dims, ggml type,
    offset). ``n_kv`` / ``n_tensors`` override the counts the header claims."""
    out = [magic, struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                              len(kvs) if n_kv is None else n_kv)]
    for key, vtype, value in kvs:
        out.append(gguf_string(key) + struct.pack("<I", vtype) + gguf_value(vtype, value))
    for name, dims, ttype, offset in tensors:
        out.append(gguf_string(name) + struct.pack("<I", len(dims))
                   + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, offset))
    head = b"".join(out)
    pad = (-len(head)) % 32
    return head + b"\0" * pad + data


def tiny_llama_kvs(**override) -> list[tuple[str, int, object]]:
    vals = {"general.architecture": (STRING, "llama"), "llama.block_count": (U32, 2),
            "llama.embedding_length": (U32, 64), "llama.feed_forward_length": (U32, 128),
            "llama.attention.head_count": (U32, 4), "llama.attention.head_count_kv": (U32, 2),
            "llama.context_length": (U32, 256), "general.file_type": (U32, 1)}
    vals.update(override)
    return [(k, t, v) for k, (t, v) in vals.items() if t is not None]


def tiny_llama_gguf(**override) -> bytes:
    """A valid llama GGUF: header plus a 100 x 64 F16 token embedding."""
    return gguf_bytes(tiny_llama_kvs(**override), [("token_embd.weight", [64, 100], 1, 0)],
                      b"\0" * (64 * 100 * 2))
