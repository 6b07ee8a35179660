"""ModelSpec from a model folder (what ``save_pretrained`` / a Hub snapshot holds):
``config.json`` for the shapes, safetensors headers for the exact parameter count and
storage dtypes. Weight data is never read; pickle files (*.bin, *.pt) are never opened."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.filecheck import os_reason, read_bounded
from cardfit.core.specs.hf_config import spec_from_config
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.core.specs.safetensors_header import (
    PICKLE_SUFFIXES,
    SafetensorsHeader,
    TensorEntry,
    _strict_json,
    friendly_dtype,
    read_safetensors_folder,
    read_safetensors_header,
)

MAX_CONFIG_BYTES = 10 * 1024 * 1024

# Stored tensors that are buffers, not parameters: GPT-2's causal-mask 'attn.bias' /
# 'attn.masked_bias' (old checkpoints), rotary inv_freq tables.
_MASK = re.compile(r"\.attn\.(masked_)?bias$")
_INV_FREQ = re.compile(r"\.inv_freq$")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A config.json as a dict; size-capped, strict JSON, errors name the file."""
    path = Path(path)
    source = str(path)
    raw = read_bounded(path, MAX_CONFIG_BYTES, source, what="config.json (a few KB)")
    data = _strict_json(raw, source, "config")
    if not isinstance(data, dict):
        raise ModelSpecError(f"a config.json must be a JSON object, got {type(data).__name__}", source=source)
    return data


def spec_from_config_file(path: str | Path, id: str | None = None) -> ModelSpec:
    return spec_from_config(load_config_file(path), source=str(path), id=id or str(path),
                            name=_folder_name(Path(path).parent) if Path(path).name == "config.json" else None)


def _folder_name(folder: Path) -> str:
    return folder.resolve().name or str(folder)


def parameter_tensors(header: SafetensorsHeader) -> list[TensorEntry]:
    return [t for t in header.tensors
            if not (_INV_FREQ.search(t.name) or (_MASK.search(t.name) and len(t.shape) != 1))]


def with_weights(spec: ModelSpec, header: SafetensorsHeader) -> ModelSpec:
    """The spec with exact counts and storage dtypes from safetensors headers."""
    notes = list(spec.notes)
    tensors = parameter_tensors(header)
    skipped = len(header.tensors) - len(tensors)
    if skipped:
        notes.append(f"{skipped} stored buffers (attention masks, rotary tables) not counted as parameters")
    by_dtype: dict[str, int] = {}
    for t in tensors:
        key = friendly_dtype(t.dtype)
        by_dtype[key] = by_dtype.get(key, 0) + t.numel
    exact = sum(t.numel for t in tensors)
    files = len(header.files)
    if isinstance(spec.config.get("quantization_config"), dict):
        notes.append(f"weights are quantized ({files} file(s), {header.total_bytes:,} bytes):"
                     " packed element counts are not parameter counts, so the config's count is used")
        return replace(spec, weight_dtypes=by_dtype, notes=tuple(notes))
    derived = spec.param_counts().derived_total
    confidence = spec.confidence
    if derived and abs(exact - derived) / derived > 0.02:
        notes.append(f"the weight files hold {exact:,} parameters but the config implies {derived:,}:"
                     " the files win for the weights")
        if confidence == "high":
            confidence = "medium"
    notes.append(f"exact parameter count from {files} safetensors file(s)")
    return replace(spec, exact_params=exact, weight_dtypes=by_dtype, notes=tuple(notes),
                   confidence=confidence)


def spec_from_folder(folder: str | Path, id: str | None = None) -> ModelSpec:
    try:
        return _spec_from_folder(Path(folder), id)
    except OSError as exc:  # an unreadable folder, a file vanishing while we list it
        raise ModelSpecError(f"cannot read: {os_reason(exc)}",
                             source=str(exc.filename or folder)) from exc


def _spec_from_folder(folder: Path, id: str | None) -> ModelSpec:
    source = str(folder)
    if not folder.is_dir():
        raise ModelSpecError("is not a folder", source=source)
    config_path = folder / "config.json"
    header = read_safetensors_folder(folder)
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if config_path.is_file():
        spec = spec_from_config(load_config_file(config_path), source=str(config_path),
                                id=id or source, name=_folder_name(folder))
        if header is not None:
            spec = with_weights(spec, header)
        elif pickles:
            spec = replace(spec, notes=spec.notes + (
                f"weights are pickle files ({', '.join(pickles[:3])}): not opened (cardfit never"
                " unpickles); counts come from config.json",))
        return spec
    if header is not None:
        return spec_from_tensors(header, source=source, id=id or source, name=_folder_name(folder))
    if pickles:
        raise ModelSpecError(
            f"has no config.json and only pickle weights ({', '.join(pickles[:3])}); cardfit never"
            " unpickles. Add the model's config.json or convert the weights to safetensors", source=source)
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    if ggufs:
        raise ModelSpecError(f"has no config.json; pass one of its GGUF files instead ({ggufs[0]})",
                             source=source)
    raise ModelSpecError("has no config.json and no .safetensors weights: not a model folder", source=source)


def spec_from_safetensors_file(path: str | Path, id: str | None = None) -> ModelSpec:
    """One .safetensors file: with its folder's config.json when there is one, else a
    best-effort guess from the tensor names and shapes."""
    path = Path(path)
    config_path = path.parent / "config.json"
    header = read_safetensors_header(path)
    try:
        has_config = config_path.is_file()
    except OSError as exc:
        raise ModelSpecError(f"cannot read: {os_reason(exc)}", source=str(config_path)) from exc
    if has_config:
        spec = spec_from_config(load_config_file(config_path), source=str(config_path),
                                id=id or str(path), name=_folder_name(path.parent))
        return with_weights(spec, header)
    return spec_from_tensors(header, source=str(path), id=id or str(path), name=path.stem)


_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


def spec_from_tensors(header: SafetensorsHeader, source: str, id: str, name: str) -> ModelSpec:
    """Best effort without a config.json: vocab and hidden size from the embedding,
    layer count from the names, heads from q/k projection widths when a head size fits."""
    tensors = {t.name: t for t in parameter_tensors(header)}

    def find(*patterns: str) -> TensorEntry | None:
        for pat in patterns:
            rx = re.compile(pat)
            for n, t in tensors.items():
                if rx.search(n):
                    return t
        return None

    embed = find(r"(embed_tokens|wte|word_embeddings|tok_embeddings|embed_in)\.weight$")
    if embed is None or len(embed.shape) != 2:
        raise ModelSpecError("no config.json, and no token embedding tensor (embed_tokens / wte) to read"
                             " the vocabulary and hidden size from; add the model's config.json", source=source)
    vocab, hidden = embed.shape
    layer_ids = {int(m.group(1)) for n in tensors if (m := _LAYER.search(n))}
    if not layer_ids:
        raise ModelSpecError("no config.json, and no numbered layers (layers.N) in the tensor names",
                             source=source)
    layers = max(layer_ids) + 1
    notes = ["no config.json: shapes guessed from tensor names and shapes"]
    cfg: dict[str, Any] = {"hidden_size": hidden, "num_hidden_layers": layers, "vocab_size": vocab,
                           "tie_word_embeddings": find(r"(^|\.)lm_head\.weight$", r"embed_out\.weight$") is None}
    q = find(r"\b0\.self_attn\.q_proj\.weight$")
    k = find(r"\b0\.self_attn\.k_proj\.weight$")
    gate = find(r"\b0\.mlp\.gate_proj\.weight$")
    up = find(r"\b0\.mlp\.(up_proj|c_fc|fc1|dense_h_to_4h)\.weight$")
    if up is not None and len(up.shape) == 2:
        a, b = up.shape  # Linear: [out, in]; GPT-2's Conv1D: [in, out]
        cfg["intermediate_size"] = a if b == hidden else b
    if q is not None and k is not None and len(q.shape) == 2 and len(k.shape) == 2:
        q_out, kv_out = q.shape[0], k.shape[0]
        for hd in (128, 64, 256, 96, 80, 112, 160, 192):
            if q_out % hd == 0 and kv_out % hd == 0 and (q_out // hd) % (kv_out // hd) == 0:
                cfg.update(num_attention_heads=q_out // hd, num_key_value_heads=kv_out // hd, head_dim=hd)
                notes.append(f"head size {hd} guessed from q_proj {q_out} / k_proj {kv_out}")
                break
    if "num_attention_heads" not in cfg:
        raise ModelSpecError("no config.json, and the attention heads cannot be read from the tensors;"
                             " add the model's config.json", source=source)
    if q is not None and gate is not None:
        cfg["model_type"] = "llama"  # HF Llama-style names (self_attn.q_proj, mlp.gate_proj)
        notes.append("tensor names follow the Llama layout: counted as a Llama-style model")
    spec = spec_from_config(cfg, source=source, id=id, name=name)
    spec = with_weights(spec, header)
    return replace(spec, confidence="low", notes=tuple(notes) + spec.notes, config={})
