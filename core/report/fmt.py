"""Wording and number formats the report's renderers share, so HTML, Markdown and PDF
say the same thing the same way."""

from __future__ import annotations

from typing import Any

from cardfit.core.units import GiB, fmt_bytes

STATUS_WORDS = {"fits": "Fits", "tight": "Fits (tight)", "no": "Does not fit"}
FIT_TEST_WORDS = {"fits": "Fits", "oom": "Out of memory", "error": "Error", "timeout": "Timed out",
                  "cancelled": "Cancelled", "crashed": "Crashed"}


def status_word(status: str) -> str:
    return STATUS_WORDS.get(status, status)


def fit_word(status: str) -> str:
    return FIT_TEST_WORDS.get(status, status)


def gib(n: int | float | None) -> str:
    """'17.39' (GiB, two decimals), '-' when unknown."""
    return "-" if n is None else f"{n / GiB:.2f}"


def size(n: int | float | None) -> str:
    return "-" if n is None else fmt_bytes(n, 2)


def params(n: int | float | None) -> str:
    if not n:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    return f"{n / 1e6:.1f} M"


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f} %"


def num(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def text(v: Any) -> str:
    """Any value as one line of text ('-' when unknown)."""
    if v is None or v == "":
        return "-"
    return " ".join(str(v).split())


def headroom(n: int) -> str:
    return f"{fmt_bytes(n, 2)} to spare" if n >= 0 else f"{fmt_bytes(-n, 2)} short"


def machine_rows(m) -> list[tuple[str, str]]:
    ram = "-"
    if m.ram_total_bytes is not None:
        ram = size(m.ram_total_bytes)
        if m.ram_available_bytes is not None:
            ram += f" ({size(m.ram_available_bytes)} available)"
    return [("Operating system", text(m.os)), ("CPU", text(m.cpu)), ("RAM", ram),
            ("NVIDIA driver", text(m.driver_version)), ("CUDA (driver)", text(m.cuda_driver_version)),
            ("NVML", text(m.nvml_message or m.nvml_status)), ("Python", text(m.python)),
            ("cardfit", text(m.cardfit_version)), ("Probed at", text(m.time))]


def model_rows(md) -> list[tuple[str, str]]:
    rows = [("Id", text(md.id)), ("Name", text(md.name)), ("Source", text(md.source)),
            ("Architecture", f"{text(md.architecture)} ({text(md.model_type)})"),
            ("Parameters", params(md.params))]
    if md.active_params:
        rows.append(("Active parameters per token", params(md.active_params)))
    rows += [("Layers", text(md.layers)), ("Hidden size", text(md.hidden_size)),
             ("Attention heads / KV heads", f"{text(md.heads)} / {text(md.kv_heads)} (head dim {text(md.head_dim)})"),
             ("MLP width", text(md.intermediate_size)), ("Vocabulary", text(md.vocab_size)),
             ("Context (max positions)", text(md.max_position))]
    if md.num_experts:
        rows.append(("Experts", f"{md.num_experts} ({md.experts_per_token} per token)"))
    rows += [("Published dtype", text(md.torch_dtype)), ("Spec confidence", text(md.confidence))]
    return rows


def workload_rows(w: dict) -> list[tuple[str, str]]:
    return [(str(k), text(v)) for k, v in w.items()]


def fit_rows(f) -> list[tuple[str, str]]:
    rows = [("Result", fit_word(f.status) + (f" (in {f.phase})" if f.phase and f.status != "fits" else "")),
            ("Message", text(f.message)),
            ("GPU", text(f.gpu_name) + ("" if f.gpu_index is None else f" (index {f.gpu_index})")),
            ("Started", text(f.started)),
            ("Model", text(f.model_name or f.model_id)),
            ("Workload", text(f.workload_label or (f.workload and ", ".join(f"{k}={v}" for k, v in f.workload.items())))),
            ("Measured peak (process, NVML)", size(f.peak_device_bytes)),
            ("Predicted peak", size(f.predicted_bytes)),
            ("Error (predicted - measured) / measured", pct(f.error_pct)),
            ("Device total / available at start", f"{size(f.device_total_bytes)} / {size(f.available_bytes)}"),
            ("Peak host RAM (RSS)", size(f.peak_rss_bytes)),
            ("Step time", "-" if f.step_seconds is None else f"{f.step_seconds:.3f} s"),
            ("Throughput", "-" if f.tokens_per_second is None else f"{f.tokens_per_second:.1f} tokens/s")]
    if f.peak_allocated_bytes is not None or f.peak_reserved_bytes is not None:
        rows.insert(-2, ("torch peak allocated / reserved",
                         f"{size(f.peak_allocated_bytes)} / {size(f.peak_reserved_bytes)}"))
    if f.versions:
        rows.append(("Versions", ", ".join(f"{k} {v}" for k, v in f.versions.items() if k != "t")))
    return rows


def card_headline(c) -> str:
    if c.fits:
        return f"needs {size(c.needed_bytes)} of {size(c.available_bytes)} available ({headroom(c.headroom_bytes)})"
    return f"needs {size(c.needed_bytes)}, {size(-c.headroom_bytes)} more than the {size(c.available_bytes)} available"


def largest_line(c) -> str:
    if c.best_plan is None:
        return "No plan fits this card."
    return (f"With the best plan ({c.best_plan}): largest batch {c.max_batch}, "
            f"longest {c.seq_kind} {c.max_seq} tokens.")
