"""Reads safetensors headers only: tensor names, dtypes and shapes, never tensor data.

Format (https://huggingface.co/docs/safetensors/index#format): 8 bytes little-endian
u64 N, then N bytes of UTF-8 JSON ``{name: {dtype, shape, data_offsets: [begin, end]},
"__metadata__": {str: str}}``, then the data area; offsets are relative to the data area.
Every value is checked before it is used, so a hostile or truncated file gives a
ModelSpecError naming the file and the field, never a traceback or a huge read.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.filecheck import open_regular, os_reason, printable, read_bounded

# A header is a few MB even for 1000-shard models' shards; beyond this it is not a model.
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_INDEX_BYTES = 50 * 1024 * 1024

# Bits per element of every dtype safetensors writes (safetensors' Dtype enum).
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
# cardfit's names for the float types a ModelSpec speaks of; others are lower-cased.
FRIENDLY = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64", "I8": "int8",
            "U8": "uint8", "F8_E4M3": "fp8_e4m3", "F8_E5M2": "fp8_e5m2"}

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
INDEX_NAME = "model.safetensors.index.json"


def friendly_dtype(dtype: str) -> str:
    return FRIENDLY.get(dtype, dtype.lower())


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str  # safetensors dtype name: BF16, F32, I8, ...
    shape: tuple[int, ...]
    nbytes: int
    file: str = ""

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """The tensors of one file, or of every shard of a sharded model."""

    path: str
    tensors: tuple[TensorEntry, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    @property
    def total_params(self) -> int:
        return sum(t.numel for t in self.tensors)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def params_by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.dtype] = out.get(t.dtype, 0) + t.numel
        return out

    def bytes_by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.dtype] = out.get(t.dtype, 0) + t.nbytes
        return out


def refuse_pickle(path: str | os.PathLike) -> None:
    """Raise for a pickle checkpoint: unpickling runs code, so cardfit never opens one."""
    raise ModelSpecError(
        "is a pickle checkpoint (.bin/.pt); cardfit never unpickles weights because that can"
        " run code. Use the model's .safetensors files (or its config.json) instead",
        source=str(path))


def _strict_json(data: bytes | str, source: str, what: str) -> Any:
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ModelSpecError(f"the {what} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                             source=source, field=what) from exc
    try:
        return json.loads(text, parse_constant=no_constants)
    except RecursionError as exc:
        raise ModelSpecError(f"the {what} is nested too deeply", source=source, field=what) from exc
    except ValueError as exc:
        raise ModelSpecError(f"the {what} is not valid JSON ({exc})", source=source, field=what) from exc


def _nonneg_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_safetensors_header(path: str | os.PathLike, max_header: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Tensor names, dtypes, shapes and sizes of one .safetensors file (header only)."""
    source = str(path)
    try:
        with open_regular(path, source) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 8:
                raise ModelSpecError(
                    f"truncated: {size} bytes, but a safetensors file starts with an 8-byte header length",
                    source=source, field="header length")
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > max_header:
                raise ModelSpecError(
                    f"header length {n:,} bytes is over the {max_header // (1024 * 1024)} MiB limit"
                    " (not a safetensors file, or a corrupt one)", source=source, field="header length")
            if n > size - 8:
                raise ModelSpecError(
                    f"header length {n:,} bytes runs past the end of the file ({size:,} bytes): truncated"
                    " or not a safetensors file", source=source, field="header length")
            if n < 2:
                raise ModelSpecError(f"header length {n} is too short for a JSON header",
                                     source=source, field="header length")
            raw = fh.read(n)
    except ModelSpecError:
        raise
    except OSError as exc:
        raise ModelSpecError(f"cannot read: {os_reason(exc)}", source=source) from exc
    if len(raw) != n:
        raise ModelSpecError(f"truncated: header is {len(raw)} of {n} bytes", source=source, field="header")
    header = _strict_json(raw, source, "header")
    if not isinstance(header, dict):
        raise ModelSpecError(f"the header must be a JSON object, got {type(header).__name__}",
                             source=source, field="header")
    data_size = size - 8 - n
    metadata: dict[str, str] = {}
    tensors: list[TensorEntry] = []
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ModelSpecError("must be an object of strings", source=source, field="__metadata__")
            metadata = dict(entry)
            continue
        tensors.append(_entry(name, entry, data_size, source, spans))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ModelSpecError(f"data of '{printable(n1)}' overlaps '{printable(n0)}' ([{b1}, {e1}) inside"
                                 f" [{b0}, {e0}))", source=source, field=f"{printable(n1)}.data_offsets")
    return SafetensorsHeader(path=source, tensors=tuple(tensors), metadata=metadata, files=(source,))


def _entry(name: str, entry: Any, data_size: int, source: str,
           spans: list[tuple[int, int, str]]) -> TensorEntry:
    shown = printable(name)
    if not isinstance(entry, dict):
        raise ModelSpecError(f"must be an object with dtype, shape and data_offsets, got {type(entry).__name__}",
                             source=source, field=shown)
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise ModelSpecError(f"unknown dtype {dtype!r:.40} (known: {', '.join(sorted(DTYPE_BITS))})",
                             source=source, field=f"{shown}.dtype")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(_nonneg_int(d) for d in shape):
        raise ModelSpecError(f"shape must be a list of non-negative whole numbers, got {shape!r:.60}",
                             source=source, field=f"{shown}.shape")
    offsets = entry.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_nonneg_int(o) for o in offsets)):
        raise ModelSpecError(f"data_offsets must be [begin, end] whole numbers, got {offsets!r:.60}",
                             source=source, field=f"{shown}.data_offsets")
    begin, end = offsets
    if begin > end:
        raise ModelSpecError(f"data_offsets begin {begin} is after end {end}",
                             source=source, field=f"{shown}.data_offsets")
    if end > data_size:
        raise ModelSpecError(
            f"data_offsets end {end:,} is past the data area ({data_size:,} bytes): truncated file",
            source=source, field=f"{shown}.data_offsets")
    numel = math.prod(shape)
    nbytes = (numel * DTYPE_BITS[dtype] + 7) // 8
    if end - begin != nbytes:
        raise ModelSpecError(
            f"data_offsets span {end - begin:,} bytes but {dtype} x {shape} needs {nbytes:,}",
            source=source, field=f"{shown}.data_offsets")
    spans.append((begin, end, name))
    return TensorEntry(name=name, dtype=dtype, shape=tuple(shape), nbytes=nbytes, file=source)


def read_safetensors_index(index_path: str | os.PathLike) -> SafetensorsHeader:
    """Every tensor of a sharded model: ``model.safetensors.index.json`` plus its shards."""
    source = str(index_path)
    path = Path(index_path)
    raw = read_bounded(path, MAX_INDEX_BYTES, source, what="safetensors index")
    index = _strict_json(raw, source, "index")
    if not isinstance(index, dict):
        raise ModelSpecError("the index must be a JSON object", source=source)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelSpecError("must be a non-empty object of tensor name -> shard file",
                             source=source, field="weight_map")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        if (not isinstance(shard, str) or not shard.endswith(".safetensors")
                or "/" in shard or "\\" in shard or "\0" in shard or shard.startswith(".")):
            raise ModelSpecError(f"shard for '{name}' must be a .safetensors file name in the same folder,"
                                 f" got {shard!r:.80}", source=source, field=f"weight_map.{printable(name)}")
        shards.setdefault(shard, []).append(name)
    tensors: list[TensorEntry] = []
    seen: dict[str, str] = {}
    for shard, names in shards.items():
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise ModelSpecError(f"shard '{printable(shard)}' listed in the index is missing", source=source,
                                 field=f"weight_map.{printable(names[0])}")
        header = read_safetensors_header(shard_path)
        have = {t.name for t in header.tensors}
        missing = [n for n in names if n not in have]
        if missing:
            raise ModelSpecError(f"tensor '{printable(missing[0])}' is mapped to '{printable(shard)}' but not in it",
                                 source=source, field=f"weight_map.{printable(missing[0])}")
        for t in header.tensors:
            if t.name in seen:
                raise ModelSpecError(f"tensor '{printable(t.name)}' is in both"
                                     f" '{printable(seen[t.name])}' and '{printable(shard)}'",
                                     source=source, field=printable(t.name))
            seen[t.name] = shard
            tensors.append(t)
    meta = index.get("metadata") if isinstance(index.get("metadata"), dict) else {}
    return SafetensorsHeader(path=source, tensors=tuple(tensors),
                             metadata={k: str(v) for k, v in meta.items()},
                             files=tuple(str(path.parent / s) for s in shards))


def read_safetensors_folder(folder: str | os.PathLike) -> SafetensorsHeader | None:
    """The weights of a model folder: the index when there is one, else every
    ``*.safetensors`` file in it; None when the folder has none."""
    folder = Path(folder)
    index = folder / INDEX_NAME
    if index.is_file():
        return read_safetensors_index(index)
    files = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if not files:
        return None
    tensors: list[TensorEntry] = []
    seen: dict[str, str] = {}
    meta: dict[str, str] = {}
    for f in files:
        header = read_safetensors_header(f)
        meta.update(header.metadata)
        for t in header.tensors:
            if t.name in seen:
                raise ModelSpecError(f"tensor '{printable(t.name)}' is in both '{seen[t.name]}' and '{f.name}'",
                                     source=str(folder), field=printable(t.name))
            seen[t.name] = f.name
            tensors.append(t)
    return SafetensorsHeader(path=str(folder), tensors=tuple(tensors), metadata=meta,
                             files=tuple(str(f) for f in files))
