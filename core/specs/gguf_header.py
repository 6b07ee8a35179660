"""ModelSpec from a GGUF file's header (llama.cpp's format), through the ``gguf`` package.

``gguf.GGUFReader`` memory-maps the file and parses the key/value header and the tensor
table; tensor data is never read (the byte counts come from each tensor's type and shape,
``GGML_QUANT_SIZES``). Key names are llama.cpp's (gguf ``Keys``): ``<arch>.block_count``,
``<arch>.attention.head_count`` and so on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from cardfit.core.errors import ModelSpecError
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


def _value(f: Any) -> Any:
    """A ReaderField's value (scalar, string or list)."""
    try:
        return f.contents()
    except AttributeError:  # gguf < 0.10 has no contents()
        part = f.parts[f.data[0]]
        return part.tolist()[0] if len(part) == 1 else part.tolist()


def _file_type_name(code: Any) -> str:
    import gguf

    try:
        name = gguf.LlamaFileType(int(code)).name
    except (ValueError, TypeError):
        return f"type {code}"
    return name.replace("MOSTLY_", "").replace("ALL_", "")


def read_gguf(path: str | os.PathLike) -> GGUFInfo:
    """The header of a .gguf file; every failure is a ModelSpecError naming the file."""
    source = str(path)
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - gguf is a declared dependency
        raise ModelSpecError("reading GGUF files needs the 'gguf' package (pip install gguf)",
                             source=source) from exc
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ModelSpecError(f"cannot read: {exc.strerror or exc}", source=source) from exc
    if size < 24:
        raise ModelSpecError(f"truncated: {size} bytes is too short for a GGUF header", source=source)
    try:
        reader = gguf.GGUFReader(path, "r")
    except ModelSpecError:
        raise
    except Exception as exc:  # the reader raises ValueError, IndexError, KeyError... on bad files
        raise ModelSpecError(f"not a readable GGUF file ({type(exc).__name__}: {str(exc)[:200]})",
                             source=source) from exc
    try:
        arch_field = reader.get_field("general.architecture")
        if arch_field is None:
            raise ModelSpecError("missing general.architecture", source=source, field="general.architecture")
        arch = _value(arch_field)
        if not isinstance(arch, str) or not arch:
            raise ModelSpecError(f"expected a name, got {arch!r:.40}", source=source,
                                 field="general.architecture")
        prefix = arch + "."
        fields: dict[str, Any] = {}
        for key, f in reader.fields.items():
            if key.startswith(prefix):
                fields[key[len(prefix):]] = _value(f)
        ft = reader.get_field("general.file_type")
        file_type = _file_type_name(_value(ft)) if ft is not None else "unknown"
        params_by_type: dict[str, int] = {}
        bytes_by_type: dict[str, int] = {}
        vocab = None
        has_output = False
        total_params = total_bytes = 0
        for t in reader.tensors:
            tname = t.tensor_type.name
            n, b = int(t.n_elements), int(t.n_bytes)
            if int(t.data_offset) + b > size:
                raise ModelSpecError(f"tensor '{t.name}' runs past the end of the file: truncated",
                                     source=source, field=t.name)
            params_by_type[tname] = params_by_type.get(tname, 0) + n
            bytes_by_type[tname] = bytes_by_type.get(tname, 0) + b
            total_params += n
            total_bytes += b
            dims = [int(d) for d in t.shape]
            if t.name == "token_embd.weight" and len(dims) == 2:
                vocab = dims[1]  # GGUF lists dims fastest first: [hidden, vocab]
            if t.name == "output.weight":
                has_output = True
        if vocab is None:
            tok = reader.get_field("tokenizer.ggml.tokens")
            if tok is not None:
                vocab = len(tok.data)
        if isinstance(fields.get("vocab_size"), int):
            vocab = vocab or fields["vocab_size"]
    except ModelSpecError:
        raise
    except Exception as exc:
        raise ModelSpecError(f"not a readable GGUF file ({type(exc).__name__}: {str(exc)[:200]})",
                             source=source) from exc
    return GGUFInfo(path=source, architecture=arch, fields=fields, file_type=file_type,
                    tensor_count=len(reader.tensors), total_params=total_params,
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
