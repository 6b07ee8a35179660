"""ModelSpec from a GGUF file's header (llama.cpp's format), through the ``gguf`` package.

The key/value header and the tensor table are read by a bounded reader of our own (see
``read_gguf``); tensor data is never read (the byte counts come from each tensor's type
and shape, ``GGML_QUANT_SIZES``). Key names are llama.cpp's (gguf ``Keys``): ``<arch>.block_count``,
``<arch>.attention.head_count`` and so on.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field, replace
from typing import Any

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.filecheck import open_regular, os_reason, printable
from cardfit.core.specs.hf_config import spec_from_config
from cardfit.core.specs.model_spec import ModelSpec

# llama.cpp architecture name -> Hugging Face model_type (the layout cardfit counts).
GGUF_TO_HF = {
    "llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3",
    "qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gemma": "gemma", "gemma2": "gemma2",
    "gemma3": "gemma3_text", "phi3": "phi3", "phi2": "phi", "gpt2": "gpt2", "falcon": "falcon",
    "starcoder2": "starcoder2", "olmo2": "olmo2", "olmoe": "olmoe", "deepseek2": "deepseek_v2",
    "gptneox": "gpt_neox",
}


@dataclass(frozen=True)
class GGUFInfo:
    path: str
    architecture: str
    fields: dict[str, Any]  # the architecture's scalar keys, prefix stripped ("block_count": 32)
    file_type: str  # e.g. Q4_K_M
    tensor_count: int
    total_params: int
    total_bytes: int  # tensor data bytes (what the weights take once loaded as stored)
    params_by_type: dict[str, int] = field(default_factory=dict)
    bytes_by_type: dict[str, int] = field(default_factory=dict)
    vocab_size: int | None = None
    has_output: bool = True  # a separate output.weight (False: tied to token_embd)


# ---- a bounded reader for the GGUF header ---------------------------------------------
#
# Format (llama.cpp docs/gguf.md, ggml/src/gguf.cpp): "GGUF", u32 version (2 or 3; 1 had
# 32-bit counts), u64 tensor count, u64 key/value count; each key/value: string key
# (u64 length + UTF-8 bytes), u32 value type, the value (an array is u32 item type + u64
# count + items); each tensor: string name, u32 dims, u64 dims[...], u32 ggml type, u64
# offset into the data area, which starts at the next multiple of general.alignment
# (default 32). Little-endian, or big-endian when the version reads byte-swapped.
#
# gguf.GGUFReader is not used: it builds a numpy view per array item (a declared count of
# 2**63 items past the end of the file never ends and grows without bound), so every count
# here is checked against the bytes left in the file before it is used, large arrays are
# skipped with a seek, and nothing is allocated by a size the file claims.

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32",
               6: "float32", 7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}
MAX_KEY_BYTES = 64 * 1024  # llama.cpp keys are ASCII names of a few dozen bytes
MAX_STRING_KEEP = 64 * 1024  # longer string values (chat templates) are skipped, not kept
MAX_ARRAY_KEEP = 1 << 16  # arrays kept as values (per-layer figures); longer ones: length only
MAX_STRINGS = 1 << 22  # string arrays (vocabularies: 262,144 tokens for Gemma 3) are walked
MAX_KV = 1 << 16  # llama.cpp files carry a few dozen keys
MAX_TENSORS = 1 << 20
MAX_DIMS = 8  # GGML_MAX_DIMS is 4


@dataclass(frozen=True)
class GGUFArray:
    """An array value that was skipped (too long to keep, or of strings): type and length."""

    item_type: str
    count: int


class _Header:
    """Sequential reads from the header, each checked against the file's size."""

    def __init__(self, fh: Any, size: int, source: str):
        self.fh = fh
        self.size = size
        self.source = source
        self.pos = 0
        self.order = "<"

    def fail(self, message: str, field: str | None = None) -> ModelSpecError:
        return ModelSpecError(message, source=self.source, field=None if field is None else printable(field))

    def need(self, n: int, what: str, field: str | None = None) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"truncated: {what} at byte {self.pos:,} needs {n:,} bytes but the file has"
                            f" {max(0, self.size - self.pos):,} left", field)

    def raw(self, n: int, what: str, field: str | None = None) -> bytes:
        self.need(n, what, field)
        data = self.fh.read(n)
        if len(data) != n:  # the file shrank under us
            raise self.fail(f"truncated while reading {what}", field)
        self.pos += n
        return data

    def skip(self, n: int, what: str, field: str | None = None) -> None:
        self.need(n, what, field)
        self.fh.seek(n, 1)
        self.pos += n

    def scalar(self, code: str, what: str, field: str | None = None) -> Any:
        size = struct.calcsize(code)
        return struct.unpack(self.order + code, self.raw(size, what, field))[0]

    def string(self, what: str, limit: int, field: str | None = None) -> str | None:
        """A GGUF string; None (skipped) when longer than ``limit``."""
        n = self.scalar("Q", f"the length of {what}", field)
        if n > limit:
            self.skip(n, what, field)
            return None
        return self.raw(n, what, field).decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype], "a value", key)
        if vtype == _STRING:
            text = self.string("a string value", MAX_STRING_KEEP, key)
            return GGUFArray("string", -1) if text is None else text
        if vtype != _ARRAY:
            raise self.fail(f"unknown value type {vtype}", key)
        itype = self.scalar("I", "an array's item type", key)
        count = self.scalar("Q", "an array's length", key)
        if itype in _SCALARS:
            item = struct.calcsize(_SCALARS[itype])
            # Checked before anything is read or allocated: a count past the end of the
            # file is a truncated or hostile file.
            self.need(count * item, f"an array of {count:,} {_TYPE_NAMES[itype]}", key)
            if count <= MAX_ARRAY_KEEP:
                data = self.raw(count * item, "an array", key)
                return list(struct.unpack(f"{self.order}{count}{_SCALARS[itype]}", data))
            self.skip(count * item, "an array", key)
            return GGUFArray(_TYPE_NAMES[itype], count)
        if itype == _STRING:
            self.need(count * 8, f"an array of {count:,} strings", key)  # 8 length bytes each
            if count > MAX_STRINGS:
                raise self.fail(f"{count:,} strings is over the {MAX_STRINGS:,} a model header holds", key)
            for _ in range(count):
                n = self.scalar("Q", "a string's length", key)
                self.skip(n, "a string", key)
            return GGUFArray("string", count)
        if itype == _ARRAY:
            raise self.fail("arrays of arrays are not part of GGUF", key)
        raise self.fail(f"unknown array item type {itype}", key)


def _file_type_name(code: Any) -> str:
    import gguf

    try:
        name = gguf.LlamaFileType(int(code)).name
    except (ValueError, TypeError, OverflowError):
        return f"type {code!s:.20}"
    return name.replace("MOSTLY_", "").replace("ALL_", "")


def read_gguf(path: str | os.PathLike) -> GGUFInfo:
    """The header of a .gguf file; every failure is a ModelSpecError naming the file.
    Reads only the header (a few MB at most for a real model), never tensor data."""
    source = str(path)
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - gguf is a declared dependency
        raise ModelSpecError("reading GGUF files needs the 'gguf' package (pip install gguf)",
                             source=source) from exc
    with open_regular(path, source) as fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            if size < 24:
                raise ModelSpecError(f"truncated: {size} bytes is too short for a GGUF header",
                                     source=source)
            return _read_header(_Header(fh, size, source), gguf)
        except OSError as exc:
            raise ModelSpecError(f"cannot read: {os_reason(exc)}", source=source) from exc


def _read_header(h: _Header, gguf: Any) -> GGUFInfo:
    source = h.source
    magic = h.raw(4, "the magic")
    if magic != b"GGUF":
        raise h.fail(f"not a GGUF file (it starts with {magic!r}, not b'GGUF')", "magic")
    (version,) = struct.unpack("<I", h.raw(4, "the version"))
    if version & 0xFFFF == 0:  # written on a big-endian machine (GGUFReader's test)
        h.order = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version not in (2, 3):
        raise h.fail(f"GGUF version {version} is not supported (2 and 3 are)", "version")
    n_tensors = h.scalar("Q", "the tensor count")
    n_kv = h.scalar("Q", "the key/value count")
    if n_kv > MAX_KV or n_kv * 13 > h.size:  # a key/value takes 13 bytes at least
        raise h.fail(f"{n_kv:,} key/value pairs cannot fit in a {h.size:,}-byte file", "kv_count")
    if n_tensors > MAX_TENSORS or n_tensors * 24 > h.size:  # a tensor entry: 24 bytes at least
        raise h.fail(f"{n_tensors:,} tensors cannot fit in a {h.size:,}-byte file", "tensor_count")

    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = h.string("a key", MAX_KEY_BYTES)
        if key is None:
            raise h.fail(f"a key at byte {h.pos:,} is over {MAX_KEY_BYTES:,} bytes", "key")
        vtype = h.scalar("I", "a value type", key)
        if key in kv:
            raise h.fail("the key appears twice", key)
        kv[key] = h.value(vtype, key)

    arch = kv.get("general.architecture")
    if arch is None:
        raise h.fail("missing general.architecture", "general.architecture")
    if not isinstance(arch, str) or not arch:
        raise h.fail(f"expected a name, got {arch!r:.40}", "general.architecture")
    prefix = arch + "."
    fields = {k[len(prefix):]: v for k, v in kv.items() if k.startswith(prefix)}
    ft = kv.get("general.file_type")
    file_type = "unknown" if ft is None else _file_type_name(ft)
    alignment = kv.get("general.alignment", 32)
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment <= 0 \
            or alignment & (alignment - 1):
        raise h.fail(f"must be a power of two, got {alignment!r:.40}", "general.alignment")

    infos: list[tuple[str, int, list[int], int]] = []
    names: set[str] = set()
    for _ in range(n_tensors):
        name = h.string("a tensor name", MAX_KEY_BYTES, "tensors")
        if name is None:
            raise h.fail(f"a tensor name at byte {h.pos:,} is over {MAX_KEY_BYTES:,} bytes", "tensors")
        if name in names:
            raise h.fail("the tensor appears twice", name)
        names.add(name)
        n_dims = h.scalar("I", "a tensor's dimension count", name)
        if n_dims > MAX_DIMS:
            raise h.fail(f"{n_dims:,} dimensions (GGUF tensors have at most 4)", name)
        dims = [h.scalar("Q", "a tensor dimension", name) for _ in range(n_dims)]
        ttype = h.scalar("I", "a tensor type", name)
        offset = h.scalar("Q", "a tensor offset", name)
        infos.append((name, ttype, dims, offset))
    data_start = -(-h.pos // alignment) * alignment

    params_by_type: dict[str, int] = {}
    bytes_by_type: dict[str, int] = {}
    vocab = None
    has_output = False
    total_params = total_bytes = 0
    for name, ttype, dims, offset in infos:
        try:
            qtype = gguf.GGMLQuantizationType(ttype)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise h.fail(f"unknown tensor type {ttype}", name) from None
        n = math.prod(dims)
        b = n * type_size // block
        if data_start + offset + b > h.size:
            raise h.fail("runs past the end of the file: truncated", name)
        tname = qtype.name
        params_by_type[tname] = params_by_type.get(tname, 0) + n
        bytes_by_type[tname] = bytes_by_type.get(tname, 0) + b
        total_params += n
        total_bytes += b
        if name == "token_embd.weight" and len(dims) == 2:
            vocab = dims[1]  # GGUF lists dims fastest first: [hidden, vocab]
        if name == "output.weight":
            has_output = True
    if vocab is None:
        tok = kv.get("tokenizer.ggml.tokens")
        if isinstance(tok, GGUFArray):
            vocab = tok.count
        elif isinstance(tok, list):
            vocab = len(tok)
    if isinstance(fields.get("vocab_size"), int) and not isinstance(fields.get("vocab_size"), bool):
        vocab = vocab or fields["vocab_size"]
    return GGUFInfo(path=source, architecture=arch, fields=fields, file_type=file_type,
                    tensor_count=len(infos), total_params=total_params,
                    total_bytes=total_bytes, params_by_type=params_by_type,
                    bytes_by_type=bytes_by_type, vocab_size=vocab, has_output=has_output)


def spec_from_gguf(path: str | os.PathLike, id: str | None = None) -> ModelSpec:
    """A ModelSpec from a GGUF header: shapes from the architecture keys, exact parameter
    count and stored bytes from the tensor table."""
    info = read_gguf(path)
    source = str(path)
    f = info.fields
    arch = info.architecture
    notes = [f"GGUF {info.file_type}: {info.tensor_count} tensors, "
             + ", ".join(f"{k} {v:,}" for k, v in sorted(info.params_by_type.items()))]

    def num(key: str, required: bool = False) -> int | None:
        v = f.get(key)
        if isinstance(v, list):  # per-layer values (some architectures): the widest layer
            ints = [x for x in v if isinstance(x, int) and not isinstance(x, bool)]
            if not ints:
                v = None
            else:
                if len(set(ints)) > 1:
                    notes.append(f"{arch}.{key} varies by layer: using the largest, {max(ints)}")
                v = max(ints)
        if v is None:
            if required:
                raise ModelSpecError("missing", source=source, field=f"{arch}.{key}")
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ModelSpecError(f"expected a whole number, got {v!r:.40}", source=source,
                                 field=f"{arch}.{key}")
        return v

    model_type = GGUF_TO_HF.get(arch)
    experts = num("expert_count") or 0
    if arch == "llama" and experts:
        model_type = "mixtral"
    if model_type is None:
        notes.append(f"GGUF architecture '{arch}' is not one cardfit maps to a transformers class:"
                     " a Llama-like layout is assumed")
    hidden = num("embedding_length", True)
    heads = num("attention.head_count", True)
    cfg: dict[str, Any] = {
        "model_type": model_type or arch,
        "hidden_size": hidden,
        "num_hidden_layers": num("block_count", True),
        "num_attention_heads": heads,
        "tie_word_embeddings": not info.has_output,
    }
    hf_key = {"hidden_size": "embedding_length", "num_hidden_layers": "block_count",
              "num_attention_heads": "attention.head_count",
              "num_key_value_heads": "attention.head_count_kv",
              "intermediate_size": "feed_forward_length", "head_dim": "attention.key_length",
              "max_position_embeddings": "context_length", "num_experts": "expert_count",
              "num_local_experts": "expert_count", "num_experts_per_tok": "expert_used_count",
              "moe_intermediate_size": "expert_feed_forward_length",
              "sliding_window": "attention.sliding_window"}
    kv = num("attention.head_count_kv")
    if kv is not None:
        cfg["num_key_value_heads"] = kv
    ffn = num("feed_forward_length")
    expert_ffn = num("expert_feed_forward_length")
    cfg["intermediate_size"] = ffn if ffn else expert_ffn
    ctx = num("context_length")
    if ctx:
        cfg["max_position_embeddings"] = ctx
    if info.vocab_size is None:
        raise ModelSpecError("no token_embd.weight tensor and no tokenizer.ggml.tokens list:"
                             " the vocabulary size is unknown", source=source, field="token_embd.weight")
    cfg["vocab_size"] = info.vocab_size
    key_len = num("attention.key_length")
    sw = num("attention.sliding_window")
    if sw:
        cfg["sliding_window"] = sw
        if model_type in ("qwen2", "qwen2_moe"):
            cfg["use_sliding_window"] = True
    if experts:
        cfg["num_local_experts" if model_type == "mixtral" else "num_experts"] = experts
        cfg["num_experts_per_tok"] = num("expert_used_count", True)
        if expert_ffn and model_type != "mixtral":
            cfg["moe_intermediate_size"] = expert_ffn
        shared_ffn = num("expert_shared_feed_forward_length")
        shared_n = num("expert_shared_count")
        if shared_ffn:
            cfg["shared_expert_intermediate_size"] = shared_ffn
        elif shared_n:
            cfg["n_shared_experts"] = shared_n
        lead = num("leading_dense_block_count")
        if lead:
            cfg["first_k_dense_replace"] = lead
    kv_lora = num("attention.kv_lora_rank")
    if kv_lora:
        rope = num("rope.dimension_count", True)
        value_len = num("attention.value_length", True)
        cfg.update(kv_lora_rank=kv_lora, q_lora_rank=num("attention.q_lora_rank") or None,
                   qk_rope_head_dim=rope, qk_nope_head_dim=(key_len or 0) - rope,
                   v_head_dim=value_len)
    elif key_len and (hidden is None or heads is None or key_len * heads != hidden or hidden % heads):
        cfg["head_dim"] = key_len
    if model_type == "falcon":
        cfg["new_decoder_architecture"] = bool(kv and kv not in (1, heads))
        if kv == 1:
            cfg["multi_query"] = True
    try:
        spec = spec_from_config(cfg, source=source, id=id or source)
    except ModelSpecError as exc:
        key = (exc.field or "").split(".")[-1]
        gguf_key = hf_key.get(key)
        message = str(exc)
        for lead in (f"{exc.source}: " if exc.source else "", f"field '{exc.field}': " if exc.field else ""):
            if lead and message.startswith(lead):
                message = message[len(lead):]
        raise ModelSpecError(message, source=source,
                             field=f"{arch}.{gguf_key}" if gguf_key else exc.field) from exc
    name = os.path.basename(source)
    if name.lower().endswith(".gguf"):
        name = name[:-5]
    return replace(
        spec,
        name=name,
        source=f"gguf:{source}",
        architecture=f"gguf:{arch}",
        torch_dtype="gguf",
        exact_params=info.total_params,
        weight_dtypes=dict(info.params_by_type),
        gguf_file_bytes=info.total_bytes,
        notes=tuple(n for n in spec.notes if not n.startswith("no torch_dtype")) + tuple(notes),
    )
