"""The card a plan is made for: a GPU of this machine, a catalog card ("what if I had a
4090?") or a bare memory size. ``Card`` unifies the three; ``resolve_card`` turns the CLI's
``--card NAME | --vram SIZE`` (or nothing: the first GPU here) into one.

``available_bytes`` is what a fit is judged against:

* detected GPU: NVML's free memory right now (other processes and the driver's
  reservation already taken out; see ``cardfit.core.hardware.gpu``);
* catalog card and custom size: the whole card, nothing taken out. The CUDA context and the
  allocator overhead the user's own process will spend are part of the *estimate*, not of
  the card, so they are not subtracted here (a measured H100 80GB showed 480 MiB used with
  no process running: tests/data/gpu_measure_h100_part1.jsonl, baseline_device_used; the
  estimator accounts for it).

The catalog is data, ``resources/gpus.json``: id, name, memory_gib (optional measured
memory_bytes), bandwidth_gbs, bf16, architecture, compute_capability, source URL.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal, Sequence

from cardfit.core.errors import UsageError
from cardfit.core.units import GiB, fmt_bytes, parse_size

__all__ = ["Card", "load_catalog", "find_card", "card_from_gpu", "card_from_vram",
           "resolve_card", "CATALOG_FILE"]

CATALOG_FILE = "gpus.json"

CardKind = Literal["detected", "catalog", "custom"]


@dataclass(frozen=True)
class Card:
    """A GPU to plan for. ``bandwidth_bytes_per_s`` and ``bf16`` are None when unknown (a
    custom size): consumers should then not refuse bf16, and skip speed estimates."""

    name: str
    total_bytes: int
    available_bytes: int
    kind: CardKind
    bandwidth_bytes_per_s: float | None = None
    bf16: bool | None = None
    gpu_index: int | None = None  # detected cards: NVML index
    id: str | None = None  # catalog cards: the slug ("rtx-4090")
    architecture: str | None = None
    compute_capability: str | None = None
    source: str | None = None  # catalog cards: the datasheet / database page
    note: str | None = None

    @property
    def label(self) -> str:
        """"RTX 4090 (24.0 GiB)", "GPU 0: NVIDIA H100 80GB HBM3 (39.2 GiB free of 79.6 GiB)"."""
        if self.kind == "detected":
            return (f"GPU {self.gpu_index}: {self.name} ({fmt_bytes(self.available_bytes)} free"
                    f" of {fmt_bytes(self.total_bytes)})")
        return f"{self.name} ({fmt_bytes(self.total_bytes)})"

    def to_json(self) -> dict:
        d = asdict(self)
        if d["bandwidth_bytes_per_s"] is not None:
            d["bandwidth_bytes_per_s"] = int(d["bandwidth_bytes_per_s"])
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Card":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# -- the catalog ----------------------------------------------------------------------------

_REQUIRED = {"id": str, "name": str, "memory_gib": (int, float), "bandwidth_gbs": (int, float),
             "bf16": bool, "architecture": str, "compute_capability": str, "source": str}


def _catalog_path() -> Path:
    from cardfit.resources import resource_path  # noqa: PLC0415

    return resource_path(CATALOG_FILE)


def _card_from_row(row: dict, where: str) -> Card:
    for key, typ in _REQUIRED.items():
        if key not in row:
            raise ValueError(f"{where}: row {row.get('id', '?')!r} lacks field '{key}'")
        if not isinstance(row[key], typ) or (typ != bool and isinstance(row[key], bool)):
            raise ValueError(f"{where}: row {row['id']!r}: field '{key}' has the wrong type")
    total = int(row.get("memory_bytes") or round(row["memory_gib"] * GiB))
    return Card(name=row["name"], total_bytes=total, available_bytes=total, kind="catalog",
                bandwidth_bytes_per_s=float(row["bandwidth_gbs"]) * 1e9, bf16=row["bf16"],
                id=row["id"], architecture=row["architecture"],
                compute_capability=row["compute_capability"], source=row["source"],
                note=row.get("note"))


@functools.lru_cache(maxsize=4)
def _load(path: str) -> tuple[tuple[Card, ...], tuple[tuple[str, ...], ...]]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    rows = doc["gpus"] if isinstance(doc, dict) else doc
    cards, aliases, ids = [], [], set()
    for row in rows:
        card = _card_from_row(row, path)
        if card.id in ids:
            raise ValueError(f"{path}: id {card.id!r} appears twice")
        ids.add(card.id)
        cards.append(card)
        aliases.append(tuple(row.get("aliases") or ()))
    return tuple(cards), tuple(aliases)


def load_catalog(path: str | Path | None = None) -> list[Card]:
    """The what-if GPUs (``kind="catalog"``), in file order. Cached."""
    return list(_load(str(path or _catalog_path()))[0])


# -- matching what users type ---------------------------------------------------------------

# Words that do not tell cards apart ("NVIDIA GeForce RTX 4090" = "rtx 4090").
_NOISE = {"nvidia", "geforce", "tesla", "quadro", "gpu", "graphics", "card", "tensor", "core",
          "generation", "grace", "hopper"}
_SYNONYMS = {"mobile": "laptop", "notebook": "laptop", "gib": "gb", "sxm4": "sxm",
             "sxm5": "sxm", "sxm2": "sxm"}
_DETECTED_RE = re.compile(r"^\s*(?:cuda|gpu|nvidia|device)\s*[:#]?\s*(\d+)\s*$", re.IGNORECASE)


def _tokens(text: str) -> list[str]:
    """"RTX 4070 Ti SUPER" -> [rtx, 4070, ti, super]; "h100-sxm" -> [h, 100, sxm];
    letters and digits are split apart so "rtx4090" and "rtx 4090" agree."""
    out = []
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        word = _SYNONYMS.get(word, word)
        for part in re.findall(r"[a-z]+|\d+", word):
            part = _SYNONYMS.get(part, part)
            if part not in _NOISE:
                out.append(part)
    return out


def _compact(text: str) -> str:
    return "".join(_tokens(text))


def _keys(card: Card, aliases: Sequence[str]) -> tuple[set[str], set[str]]:
    """(the tokens a query may use for this card, the tokens of its name that are not its
    memory size: a query that leaves those out is less precise)."""
    size = {str(round(card.total_bytes / GiB)), "gb"}
    name = set(_tokens(card.name))
    allowed = name | size | set(_tokens(card.id or ""))
    for a in aliases:
        allowed |= set(_tokens(a))
    if card.id and "laptop" not in card.id:
        allowed.add("desktop")
    return allowed, name - size


def _catalog_matches(text: str) -> list[Card]:
    cards, alias_lists = _load(str(_catalog_path()))
    query = _tokens(text)
    if not query:
        return []
    compact = "".join(query)
    # 1. An exact id, name or alias.
    exact = [c for c, al in zip(cards, alias_lists)
             if compact in {_compact(c.id or ""), _compact(c.name), *(_compact(a) for a in al)}]
    if exact:
        return exact
    # 2. Every word of the query belongs to the card; the card with the fewest words the
    #    query left out wins ("4090" -> RTX 4090 rather than RTX 4090 Laptop GPU).
    qset = set(query)
    scored = []
    for c, al in zip(cards, alias_lists):
        allowed, name = _keys(c, al)
        if qset <= allowed:
            scored.append((len(name - qset), c))
    if not scored:
        return []
    best = min(s for s, _ in scored)
    return [c for s, c in scored if s == best]


def _model_code(card_id: str) -> str:
    """"h100-pcie" -> "h100", "rtx-4090-laptop" -> "rtx4090": the id up to its number."""
    m = re.match(r"^(.*?\d+)", card_id.replace("-", ""))
    return m.group(1) if m else card_id


def _suggestions(text: str, limit: int = 5) -> list[str]:
    cards, _ = _load(str(_catalog_path()))
    out: list[str] = []
    # Cards sharing a model number's first three digits come first ("4095" -> the 4090s)...
    for num in re.findall(r"\d{3,}", text):
        for c in cards:
            if num[:3] in (c.id or "") and c.id not in out:
                out.append(c.id)
    # ...then ids, names and model codes that are spelled alike ("H10O" -> the H100s).
    by_key: dict[str, list[str]] = {}
    for c in cards:
        for key in (_compact(c.name), _compact(c.id or ""), _model_code(c.id or "")):
            by_key.setdefault(key, []).append(c.id)
    for key in difflib.get_close_matches(_compact(text), list(by_key), n=limit, cutoff=0.6):
        for card_id in by_key[key]:
            if card_id not in out:
                out.append(card_id)
    return out[:limit]


def find_card(text: str, gpus: Sequence | None = None) -> Card:
    """The card ``text`` names. Tolerant: case, spaces, dashes, "NVIDIA"/"GeForce" do not
    matter ("4090", "rtx 4090", "RTX4090", "h100-sxm", "a100 80gb sxm"). "cuda:0", "gpu0",
    "gpu:1" name a GPU of this machine (``gpus``, probed when None; NVML's numbering).

    Raises ``UsageError`` naming close catalog cards when nothing or several match."""
    text = (text or "").strip()
    if not text:
        raise UsageError("--card needs a GPU name, e.g. --card 4090 or --card h100-sxm")
    m = _DETECTED_RE.match(text)
    if m:
        return _detected(int(m.group(1)), gpus, asked=text)
    matches = _catalog_matches(text)
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(f"{c.id} ({c.name})" for c in matches[:8])
        raise UsageError(f"--card '{text}' matches several GPUs: {names}. "
                         "Name one of them (its id works)")
    close = _suggestions(text)
    hint = f" Close: {', '.join(close)}." if close else ""
    raise UsageError(f"--card '{text}': no such GPU in the catalog.{hint} "
                     "`cardfit detect --cards` lists them all; for any other card pass "
                     "--vram SIZE (e.g. --vram 24GB)")


def card_from_gpu(gpu) -> Card:
    """A detected GPU (``GpuInfo``) as a ``Card``: available = NVML free memory."""
    if getattr(gpu, "error", None):
        raise UsageError(f"GPU {gpu.index} could not be read: {gpu.error}")
    total = gpu.memory_total_bytes
    if total is None or gpu.available_bytes is None:
        raise UsageError(f"GPU {gpu.index} ({gpu.name}): NVML does not report its memory; "
                         "pass --vram SIZE instead")
    return Card(name=gpu.name or f"GPU {gpu.index}", total_bytes=int(total),
                available_bytes=int(gpu.available_bytes), kind="detected",
                bandwidth_bytes_per_s=gpu.bandwidth_bytes_per_s, bf16=gpu.bf16,
                gpu_index=gpu.index, compute_capability=gpu.compute_capability)


def _probe() -> tuple[list, str]:
    from cardfit.core.hardware import nvml  # noqa: PLC0415
    from cardfit.core.hardware.gpu import probe_gpus  # noqa: PLC0415

    gpus = probe_gpus()
    return gpus, nvml.state().message


def _detected(index: int, gpus: Sequence | None, asked: str) -> Card:
    reason = ""
    if gpus is None:
        gpus, reason = _probe()
    if not gpus:
        why = f" ({reason})" if reason else ""
        raise UsageError(f"--card {asked}: no NVIDIA GPU detected{why}. Pass --card NAME "
                         "(e.g. --card 4090) or --vram SIZE (e.g. --vram 24GB) to plan for "
                         "a what-if card")
    for gpu in gpus:
        if gpu.index == index:
            return card_from_gpu(gpu)
    have = ", ".join(f"cuda:{g.index}" for g in gpus)
    raise UsageError(f"--card {asked}: this machine has no GPU {index} (it has {have})")


def card_from_vram(size_text: str | int | float) -> Card:
    """A card that is just a memory size ("24GB", "80 GiB", "16384MiB"; a bare number is
    GiB). Bandwidth and bf16 are unknown (None)."""
    size = parse_size(size_text)
    return Card(name=f"custom {fmt_bytes(size)}", total_bytes=size, available_bytes=size,
                kind="custom")


def resolve_card(card: str | None = None, vram: str | int | float | None = None,
                 gpus: Sequence | None = None) -> Card:
    """The card for ``--card NAME`` or ``--vram SIZE``; with neither, the first GPU of this
    machine that could be read (``gpus``, probed when None). ``UsageError`` when both are
    given, or neither and no GPU is detected."""
    if card and vram not in (None, ""):
        raise UsageError("pass either --card or --vram, not both")
    if card:
        return find_card(card, gpus)
    if vram not in (None, ""):
        return card_from_vram(vram)
    reason = ""
    if gpus is None:
        gpus, reason = _probe()
    healthy = [g for g in gpus if not getattr(g, "error", None)]
    if not healthy:
        if gpus:
            errors = "; ".join(f"GPU {g.index}: {g.error}" for g in gpus)
            raise UsageError(f"no usable NVIDIA GPU ({errors}). Pass --card NAME or --vram SIZE")
        why = f" ({reason})" if reason else ""
        raise UsageError(f"no NVIDIA GPU detected{why}. Pass --card NAME (e.g. --card 4090) "
                         "or --vram SIZE (e.g. --vram 24GB) to plan for a what-if card")
    return card_from_gpu(healthy[0])
