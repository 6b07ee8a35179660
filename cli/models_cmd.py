"""``cardfit models``: the bundled model catalog, as a table or as JSON."""

from __future__ import annotations

import json

from cardfit.core.specs.catalog import catalog_rows, catalog_specs
from cardfit.core.specs.model_spec import ModelSpec


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the bundled model catalog",
        description="List the models cardfit knows by name. Any config.json, model folder,"
                    " GGUF file or Hugging Face Hub id works as MODEL too.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--search", metavar="TEXT", default=None,
                   help="only models whose id, name, family or model type contains TEXT")
    p.set_defaults(func=run)


def fmt_params(n: float) -> str:
    """'8.03B', '124M': parameter counts the way model cards print them."""
    if n >= 1e9:
        return f"{n / 1e9:.3g}B" if n < 1e11 else f"{n / 1e9:.0f}B"
    return f"{n / 1e6:.3g}M"


def moe_text(spec: ModelSpec) -> str:
    if not spec.is_moe:
        return "-"
    out = f"{spec.num_experts}x top-{spec.experts_per_token}"
    if spec.shared_expert_intermediate_size:
        out += " +shared"
    return out


def _rows(search: str | None) -> list[tuple[dict, ModelSpec]]:
    rows = list(zip(catalog_rows(), catalog_specs()))
    if search:
        key = search.strip().lower()
        rows = [(r, s) for r, s in rows
                if any(key in str(v).lower() for v in (s.id, s.name, r.get("family", ""), s.model_type))]
    return rows


def model_json(row: dict, spec: ModelSpec) -> dict:
    d = spec.to_json()
    d.update(family=row.get("family"), params_b=row.get("params_b"), catalog_source=row.get("source"))
    return d


def run(args) -> int:
    rows = _rows(args.search)
    if args.json:
        print(json.dumps([model_json(r, s) for r, s in rows], indent=2))
        return 0
    if not rows:
        print(f"no catalog model matches '{args.search}'")
        return 0
    header = ("ID", "FAMILY", "PARAMS", "LAYERS", "HIDDEN", "HEADS/KV", "CONTEXT", "MOE")
    table = [header]
    for row, s in rows:
        table.append((s.id, str(row.get("family", "")), fmt_params(s.param_counts().total),
                      str(s.num_layers), str(s.hidden_size), f"{s.num_heads}/{s.num_kv_heads}",
                      f"{s.max_position:,}", moe_text(s)))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    right = {2, 3, 4, 5, 6}
    for r in table:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        print("  ".join(cells).rstrip())
    print(f"\n{len(rows)} models. MODEL may also be a config.json, a model folder, a .gguf file"
          " or a Hugging Face Hub id (org/name).")
    return 0
