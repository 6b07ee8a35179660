"""Byte sizes: parsing what users type ("24GB", "80 GiB", "16384MiB") and printing sizes
the way nvidia-smi users read them (binary units)."""

from __future__ import annotations

import math
import re

from cardfit.core.errors import UsageError

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": KiB,
    "m": 1000**2, "mb": 1000**2, "mib": MiB,
    # GPU memory is sold in binary gigabytes ("80GB" on an H100 is 80 GiB of HBM, of
    # which 79.6 GiB is addressable), so a bare G / GB means GiB, as nvidia-smi prints it.
    "g": GiB, "gb": GiB, "gib": GiB,
    "t": TiB, "tb": TiB, "tib": TiB,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int | float) -> int:
    """Bytes from a size a user typed; a bare number is GiB (``--vram 24``)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), "g"
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise UsageError(f"'{text}' is not a size (try 24GB, 80GiB or 16384MiB)")
        value, unit = float(m.group(1)), m.group(2).lower() or "g"
        if unit not in _UNITS:
            raise UsageError(f"'{text}': unknown unit '{m.group(2)}' (use MiB, GiB or TiB)")
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"'{text}' is not a positive size")
    out = int(value * _UNITS[unit])
    if out > 1024 * TiB:
        raise UsageError(f"'{text}' is larger than any GPU")
    return out


def fmt_bytes(n: float, digits: int = 1) -> str:
    """'23.5 GiB', '512 MiB': binary units, as nvidia-smi and torch print them."""
    n = float(n)
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{sign}{n / size:.{digits}f} {unit}"
    return f"{sign}{int(n)} B"


def gib(n: float) -> float:
    return n / GiB
