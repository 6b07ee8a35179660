"""The bundled model catalog (``resources/models.json``): current open models, each row
the architecture fields of the model's published config.json (its ``source`` URL)."""

from __future__ import annotations

import functools
import json
from typing import Any

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.hf_config import spec_from_config
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.resources import resource_path

CATALOG_FILE = "models.json"


@functools.lru_cache(maxsize=1)
def catalog_rows() -> tuple[dict[str, Any], ...]:
    """The raw rows of the catalog, read once."""
    path = resource_path(CATALOG_FILE)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"cannot read the model catalog: {exc}", source=str(path)) from exc
    rows = doc.get("models") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise ModelSpecError("the model catalog has no 'models' list", source=str(path))
    return tuple(rows)


@functools.lru_cache(maxsize=1)
def _specs() -> tuple[ModelSpec, ...]:
    out = []
    for row in catalog_rows():
        spec = spec_from_config(row["config"], source=row["source"], id=row["id"], name=row.get("name"))
        out.append(spec)
    return tuple(out)


def catalog_specs() -> list[ModelSpec]:
    """Every catalog model as a ModelSpec (built once, then cached)."""
    return list(_specs())


def catalog_row(model_id: str) -> dict[str, Any] | None:
    """The catalog row (family, params_b, source...) of an exact catalog id."""
    for row in catalog_rows():
        if row["id"] == model_id:
            return row
    return None


def find_model(text: str) -> ModelSpec | None:
    """A catalog model by id ('meta-llama/Llama-3.1-8B'), by the part after '/'
    ('Llama-3.1-8B'), or by a unique prefix of either, case-insensitively; else None."""
    key = text.strip().lower()
    if not key:
        return None
    specs = _specs()
    for spec in specs:
        if spec.id.lower() == key:
            return spec
    tail_hits = [s for s in specs if s.id.lower().split("/", 1)[-1] == key]
    if len(tail_hits) == 1:
        return tail_hits[0]
    prefix_hits = [s for s in specs
                   if s.id.lower().startswith(key) or s.id.lower().split("/", 1)[-1].startswith(key)]
    if len(prefix_hits) == 1:
        return prefix_hits[0]
    return None


def close_matches(text: str, n: int = 5) -> list[str]:
    """Catalog ids that look like ``text`` (for 'did you mean' messages)."""
    import difflib

    key = text.strip().lower()
    ids = [s.id for s in _specs()]
    by_lower: dict[str, str] = {}
    for i in ids:
        by_lower.setdefault(i.lower(), i)
        by_lower.setdefault(i.lower().split("/", 1)[-1], i)
    out: list[str] = []
    # Substring hits first (a partial name like 'qwen3-8'), then edit-distance look-alikes.
    for low, i in by_lower.items():
        if key and key in low and i not in out:
            out.append(i)
    for low in difflib.get_close_matches(key, list(by_lower), n=n, cutoff=0.5):
        if by_lower[low] not in out:
            out.append(by_lower[low])
    return out[:n]
