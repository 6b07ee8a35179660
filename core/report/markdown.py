"""The report as Markdown (CommonMark + GitHub tables), for a ticket or a pull request.

Charts are text (a bar per component, and a coarse plot of the fit test's curve) in fenced
blocks, since Markdown hosts drop inline SVG and data: images. Every string from the
model, the machine or a file goes through ``md``: each character CommonMark gives a
meaning (links, emphasis, code, raw HTML, table pipes) is backslash-escaped (CommonMark
0.31 section 2.4: any ASCII punctuation may be escaped), and line breaks are folded, so a
hostile name cannot open a link, a script tag or a new table cell.
"""

from __future__ import annotations

import re

from cardfit.core.report import fmt
from cardfit.core.units import GiB

__all__ = ["render_markdown", "md"]

# "$" too: GitHub renders $...$ as math.
_SPECIAL = set("\\`*_{}[]()#+!|<>~&$")
_LIST_START = re.compile(r"^(\s*\d*)([-=.)])")


def md(v: object, start: bool = False) -> str:
    """``v`` as inert Markdown text; ``start``: it begins a line."""
    if v is None:
        return "-"
    s = " ".join(str(v).split())
    s = "".join("\\" + ch if ch in _SPECIAL else ch for ch in s)
    if not start:
        return s
    # A leading "-", "1." or "=" would make a list item or a heading at the start of a line.
    return _LIST_START.sub(lambda m: m.group(1) + "\\" + m.group(2), s, count=1)


def _table(head: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    out = ["| " + " | ".join(md(h) for h in head) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return out + [""]


def _kv(rows: list[tuple[str, str]]) -> list[str]:
    return _table(["", ""], [[k, v] for k, v in rows])


def _fence(lines: list[str]) -> list[str]:
    # Labels are ours (LABELS, numbers); backticks are replaced anyway, so nothing can
    # close the fence early.
    return ["```text", *[line.replace("`", "'") for line in lines], "```", ""]


def _bar_lines(components, total: int, width: int = 40) -> list[str]:
    top = max(total, 1)
    label_w = max([len(c.label) for c in components] + [5])
    lines = []
    for c in components:
        n = c.bytes / top * width
        bar = "#" * int(n) + ("+" if 0 < n - int(n) or (c.bytes and int(n) == 0) else "")
        lines.append(f"{c.label:<{label_w}} {c.bytes / GiB:7.2f} GiB  {bar}")
    lines.append(f"{'Total per GPU':<{label_w}} {total / GiB:7.2f} GiB")
    return lines


def _curve_lines(samples, predicted: int | None, rows: int = 10, cols: int = 60) -> list[str]:
    pts = [(s["t"], s["device_used"]) for s in samples
           if isinstance(s.get("t"), (int, float)) and isinstance(s.get("device_used"), (int, float))]
    if not pts:
        return ["(no samples recorded)"]
    t_max = max(p[0] for p in pts) or 1
    y_max = max([p[1] for p in pts] + [predicted or 0]) or 1
    col_max = [0.0] * cols
    for t, u in pts:
        i = min(cols - 1, int(t / t_max * (cols - 1)))
        col_max[i] = max(col_max[i], u)
    for i in range(1, cols):  # carry the level across columns with no sample
        if col_max[i] == 0:
            col_max[i] = col_max[i - 1]
    pred_row = None if not predicted else rows - 1 - min(rows - 1, int(predicted / y_max * (rows - 1) + 0.5))
    grid = []
    for r in range(rows):
        level = (rows - 1 - r) / (rows - 1) * y_max
        line = "".join("#" if v >= level and v > 0 else ("-" if r == pred_row else " ") for v in col_max)
        grid.append(f"{level / GiB:7.1f} GiB |{line}")
    grid.append(" " * 12 + "+" + "-" * cols)
    grid.append(" " * 12 + f"0 s{' ' * (cols - 10)}{t_max:7.1f} s")
    if pred_row is not None:
        grid.append("('-': the predicted peak)")
    return grid


def render_markdown(report) -> str:
    m, mdl, p = report.machine, report.model, report.prediction
    out = [f"# cardfit report: {md(mdl.name)}", "",
           f"{md(p.label, start=True)}  ", f"Made {md(report.created)} by cardfit {md(report.cardfit_version)}", ""]
    for n in report.notes:
        out += [f"> **Note:** {md(n)}", ""]

    out += ["## Summary", "",
            f"- Predicted peak device memory per GPU: **{md(fmt.size(p.total_bytes))}** (at {md(p.peak_stage)}); "
            f"host RAM {md(fmt.size(p.ram_bytes))}."]
    for c in report.cards:
        out.append(f"- {md(c.name)}: **{md(fmt.status_word(c.status))}**: {md(fmt.card_headline(c))}. "
                   f"Plans: {md(c.sentence)}.")
    f = report.fit_test
    if f is not None:
        out.append(f"- Fit test on {md(f.gpu_name)}: **{md(fmt.fit_word(f.status))}**, measured "
                   f"{md(fmt.size(f.peak_device_bytes))} vs predicted {md(fmt.size(f.predicted_bytes))} "
                   f"(error {md(fmt.pct(f.error_pct))}).")
    out.append("")

    out += ["## Machine", ""]
    if m is None:
        out += ["Not recorded.", ""]
    else:
        if m.gpus:
            out += _table(["GPU", "Name", "Memory", "Free", "Driver", "CUDA", "Compute cap.", "State"],
                          [[str(g.index), fmt.text(g.name), fmt.size(g.memory_total_bytes),
                            fmt.size(g.memory_free_bytes), fmt.text(g.driver_version),
                            fmt.text(g.cuda_driver_version), fmt.text(g.compute_capability),
                            fmt.text(g.error) if g.error else "ok"] for g in m.gpus], right={2, 3})
        else:
            out += ["No NVIDIA GPU detected.", ""]
        out += _kv(fmt.machine_rows(m))

    out += ["## Model", ""] + _kv(fmt.model_rows(mdl))
    out += [f"- {md(n)}" for n in mdl.notes] + ([""] if mdl.notes else [])

    out += ["## Workload and predicted memory", "",
            f"**{md(p.label)}**; the peak falls in the {md(p.peak_stage)} stage (estimate confidence: "
            f"{md(p.confidence)}).", ""]
    out += _fence(_bar_lines(p.components, p.total_bytes))
    out += _table(["Component", "GiB", "Formula", "Source"],
                  [[c.label, fmt.gib(c.bytes), c.formula, c.source] for c in p.components]
                  + [["Total per GPU", fmt.gib(p.total_bytes), "", ""]], right={1})
    out += ["### Host RAM", ""]
    out += _table(["Component", "GiB", "Formula", "Source"],
                  [[c.label, fmt.gib(c.bytes), c.formula, c.source] for c in p.ram_components]
                  + [["Total", fmt.gib(p.ram_bytes), "", ""]], right={1})
    out += ["### Workload settings", ""] + _kv(fmt.workload_rows(p.workload))

    out += ["## Verdict per card", ""]
    if report.cards:
        out += _table(["Card", "Kind", "Available GiB", "Needed GiB", "Headroom GiB", "Verdict"],
                      [[c.name, c.kind, fmt.gib(c.available_bytes), fmt.gib(c.needed_bytes),
                        fmt.gib(c.headroom_bytes),
                        fmt.status_word(c.status) + ("" if c.ram_fits else "; host RAM short")]
                       for c in report.cards], right={2, 3, 4})
        out += ["## Best plans", ""]
    else:
        out += ["No card to judge against.", ""]
    for c in report.cards:
        out += [f"### {md(c.name)} ({md(fmt.size(c.available_bytes))} available)", "", md(c.sentence, start=True), ""]
        out += _table(["Plan", "GiB", "Verdict", "Headroom", "Note"],
                      [[pl.label, fmt.gib(pl.total_bytes), fmt.status_word(pl.status),
                        fmt.headroom(pl.headroom_bytes), pl.note] for pl in c.plans], right={1})
        out += [md(fmt.largest_line(c), start=True), ""]

    if f is not None:
        out += ["## Fit test", ""] + _kv(fmt.fit_rows(f))
        out += ["Device memory of the test process over time (NVML used minus the baseline):", ""]
        out += _fence(_curve_lines(f.samples, f.predicted_bytes))

    out += ["## Assumptions", ""] + [f"- {md(a)}" for a in report.assumptions] + [""]
    out += [f"Report schema {md(report.schema)}. Sizes are binary: 1 GiB = 1024^3 bytes.", ""]
    return "\n".join(out)

