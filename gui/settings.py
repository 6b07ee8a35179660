"""What the window remembers between sessions, in ``QSettings("cardfit", "cardfit")``
(an INI file under ~/.config/cardfit on Linux, the registry on Windows).

Keys: window/geometry, window/state, window/splitter, model/last (a model reference:
catalog id, path or Hub id), models/user (the references the user added), workload/json
(``Workload.to_json()``), card/key ("gpu:0", "catalog:rtx-4090", "custom:24"), card/gpus,
table/search, table/context, hardware/interval_ms, fittest/python (the fit-test
interpreter, read by the fit-test dialog).
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QSettings

from cardfit.core.errors import UsageError
from cardfit.core.estimate.workload import Workload

ORG = APP = "cardfit"


def open_settings() -> QSettings:
    return QSettings(ORG, APP)


def redirect(folder: str) -> None:
    """Keep settings in ``folder`` (tests and ``--screenshot``: never read or write the
    user's own). Applies to every QSettings made afterwards in this process."""
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, folder)
        QSettings.setPath(fmt, QSettings.Scope.SystemScope, folder)


def get_str(s: QSettings, key: str, default: str = "") -> str:
    v = s.value(key, default)
    return default if v is None else str(v)


def get_int(s: QSettings, key: str, default: int) -> int:
    try:
        return int(s.value(key, default))
    except (TypeError, ValueError):
        return default


def get_list(s: QSettings, key: str) -> list[str]:
    raw = s.value(key, "")
    if not raw:
        return []
    try:
        v = json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        return []
    return [str(x) for x in v if isinstance(x, (str, int))] if isinstance(v, list) else []


def set_list(s: QSettings, key: str, values: list[str]) -> None:
    s.setValue(key, json.dumps(list(values)))


def load_workload(s: QSettings) -> Workload | None:
    """The last workload, or None when there is none or it no longer validates."""
    raw = s.value("workload/json", "")
    if not raw:
        return None
    try:
        return Workload.from_json(json.loads(str(raw)))
    except (ValueError, TypeError, UsageError):
        return None


def save_workload(s: QSettings, w: Workload) -> None:
    s.setValue("workload/json", json.dumps(w.to_json()))


def value(s: QSettings, key: str, default: Any = None) -> Any:
    return s.value(key, default)
