"""What a user's MODEL argument names, in this order:

1. an existing path: a config.json (any ``.json`` config), a model folder, a ``.gguf``
   file or a ``.safetensors`` file (pickle ``.bin``/``.pt`` files are refused);
2. a catalog model: exact id, the part after '/', or a unique prefix (case-insensitive);
3. a Hugging Face Hub id ``org/name`` (config.json and safetensors headers only);
4. otherwise an error listing close catalog matches.
"""

from __future__ import annotations

from pathlib import Path

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.catalog import close_matches, find_model
from cardfit.core.specs.folder import (
    load_config_file,
    spec_from_config_file,
    spec_from_folder,
    spec_from_safetensors_file,
)
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.core.specs.safetensors_header import INDEX_NAME, PICKLE_SUFFIXES, refuse_pickle

FILE_SUFFIXES = {".json", ".gguf", ".safetensors"} | PICKLE_SUFFIXES
USAGE = ("pass a config.json, a model folder, a .gguf or .safetensors file, a catalog model"
         " (cardfit models) or a Hugging Face Hub id (org/name)")


def resolve_model(text: str) -> ModelSpec:
    t = (text or "").strip()
    if not t:
        raise ModelSpecError(f"no model given: {USAGE}")
    try:
        path = Path(t).expanduser()
        exists = path.exists()
    except (OSError, ValueError, RuntimeError) as exc:
        # a name too long for the OS, an embedded NUL (GUI text), '~user' with no such user
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ModelSpecError(f"not a usable path ({reason}). {USAGE}", source=_shorten(t)) from None
    if exists:
        return _from_path(path, t)
    spec = find_model(t)
    if spec is not None:
        return spec
    if _looks_like_path(t):
        raise ModelSpecError(f"no such file or folder ({USAGE})", source=t)
    from cardfit.core.specs.hub import is_hub_id, spec_from_hub

    if is_hub_id(t):
        try:
            return spec_from_hub(t)
        except ModelSpecError as exc:
            near = close_matches(t)
            if near:
                raise ModelSpecError(f"{exc} Close catalog models: {', '.join(near)}",
                                     source=None, field=exc.field) from exc
            raise
    near = close_matches(t)
    hint = f"; close catalog models: {', '.join(near)}" if near else ""
    raise ModelSpecError(f"'{t}' is not a file, a catalog model or a Hub id (org/name){hint}. {USAGE}",
                         source=t)


def _shorten(t: str, keep: int = 120) -> str:
    return t if len(t) <= keep else f"{t[:keep // 2]}...{t[-keep // 2:]} ({len(t):,} characters)"


def _looks_like_path(t: str) -> bool:
    return (t.startswith(("/", "./", "../", "~", "\\")) or t.count("/") > 1 or "\\" in t
            or Path(t).suffix.lower() in FILE_SUFFIXES or (len(t) > 1 and t[1] == ":"))


def _from_path(path: Path, as_given: str) -> ModelSpec:
    if path.is_dir():
        return spec_from_folder(path, id=as_given)
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        from cardfit.core.specs.gguf_header import spec_from_gguf

        return spec_from_gguf(path, id=as_given)
    if suffix in PICKLE_SUFFIXES:
        refuse_pickle(path)
    if suffix == ".safetensors":
        return spec_from_safetensors_file(path, id=as_given)
    if suffix == ".json":
        if path.name == INDEX_NAME:  # a sharded model's index: the folder it indexes
            return spec_from_folder(path.parent, id=as_given)
        data = load_config_file(path)
        if "weight_map" in data and not any(k in data for k in ("model_type", "hidden_size")):
            return spec_from_folder(path.parent, id=as_given)
        return spec_from_config_file(path, id=as_given)
    raise ModelSpecError(f"unsupported file type '{suffix or path.name}': {USAGE}", source=str(path))
