"""ModelSpec for a Hugging Face Hub id (``org/name``): downloads only ``config.json`` and
reads the safetensors headers through the Hub's range requests
(``HfApi.get_safetensors_metadata``). No weights are downloaded and no repository code
is run (cardfit never imports transformers here, so ``trust_remote_code`` cannot arise)."""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import replace

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs.folder import load_config_file
from cardfit.core.specs.hf_config import spec_from_config
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.core.specs.safetensors_header import friendly_dtype

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
TIMEOUT_S = 10.0
_MASK = re.compile(r"(\.attn\.(masked_)?bias|\.inv_freq)$")


def is_hub_id(text: str) -> bool:
    return bool(HUB_ID.match(text)) and ".." not in text


def _offline_env() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    return False


def _hint(repo_id: str) -> str:
    return (f"Download its config.json (https://huggingface.co/{repo_id}/blob/main/config.json)"
            " and pass the file, or pick a catalog model (cardfit models)")


def hub_error(repo_id: str, exc: BaseException) -> ModelSpecError:
    """One clear message for every way a Hub read fails."""
    name = type(exc).__name__
    names = {c.__name__ for c in type(exc).__mro__}
    if "GatedRepoError" in names:
        why = ("is gated: accept its license on huggingface.co and log in (hf auth login),"
               " or use a local copy of its config.json")
        return ModelSpecError(f"cannot read the Hugging Face Hub model {repo_id}: it {why}", source=repo_id)
    if "RepositoryNotFoundError" in names:
        return ModelSpecError(f"cannot read the Hugging Face Hub model {repo_id}: no such model (or it is"
                              f" private). {_hint(repo_id)}", source=repo_id)
    if names & {"EntryNotFoundError", "RemoteEntryNotFoundError"} and "LocalEntryNotFoundError" not in names:
        return ModelSpecError(f"the Hugging Face Hub model {repo_id} has no config.json (not a transformers"
                              " model?)", source=repo_id)
    if names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError"}:
        why = "offline"
    elif "Timeout" in name or isinstance(exc, TimeoutError):
        why = f"timed out after {TIMEOUT_S:g} s"
    else:
        why = f"network error ({name}: {str(exc)[:160]})"
    return ModelSpecError(f"cannot reach the Hugging Face Hub to read {repo_id}: {why}. {_hint(repo_id)}",
                          source=repo_id)


def spec_from_hub(repo_id: str, revision: str | None = None, timeout: float = TIMEOUT_S) -> ModelSpec:
    if not is_hub_id(repo_id):
        raise ModelSpecError("is not a Hugging Face Hub id (org/name)", source=repo_id)
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise ModelSpecError("reading Hub models needs the huggingface_hub package", source=repo_id) from exc
    if _offline_env() or getattr(constants, "HF_HUB_OFFLINE", False):
        raise ModelSpecError(
            f"cannot reach the Hugging Face Hub to read {repo_id}: offline (HF_HUB_OFFLINE is set). "
            f"{_hint(repo_id)}", source=repo_id)
    try:
        path = huggingface_hub.hf_hub_download(repo_id, "config.json", revision=revision,
                                               etag_timeout=timeout)
    except Exception as exc:  # every Hub / network failure becomes one message
        raise hub_error(repo_id, exc) from exc
    url = f"https://huggingface.co/{repo_id}/blob/{revision or 'main'}/config.json"
    spec = spec_from_config(load_config_file(path), source=url, id=repo_id,
                            name=repo_id.split("/", 1)[1])
    return _with_hub_counts(spec, repo_id, revision, timeout)


def _with_hub_counts(spec: ModelSpec, repo_id: str, revision: str | None, timeout: float) -> ModelSpec:
    import huggingface_hub

    notes = list(spec.notes)
    if isinstance(spec.config.get("quantization_config"), dict):
        notes.append("quantized weights: the parameter count comes from config.json")
        return replace(spec, notes=tuple(notes))
    try:
        api = huggingface_hub.HfApi()
        kwargs = {"revision": revision}
        if "timeout" in inspect.signature(api.get_safetensors_metadata).parameters:
            kwargs["timeout"] = timeout
        meta = api.get_safetensors_metadata(repo_id, **kwargs)
        by_dtype: dict[str, int] = {}
        total = 0
        for fmeta in meta.files_metadata.values():
            for tname, info in fmeta.tensors.items():
                if _MASK.search(tname):
                    continue  # GPT-2 causal-mask buffers, rotary tables: not parameters
                key = friendly_dtype(info.dtype)
                by_dtype[key] = by_dtype.get(key, 0) + int(info.parameter_count)
                total += int(info.parameter_count)
    except Exception as exc:
        notes.append(f"exact parameter count unavailable ({type(exc).__name__}): derived from config.json")
        return replace(spec, notes=tuple(notes))
    if total <= 0:
        return replace(spec, notes=tuple(notes))
    notes.append("exact parameter count from the Hub's safetensors headers")
    return replace(spec, exact_params=total, weight_dtypes=by_dtype, notes=tuple(notes))
