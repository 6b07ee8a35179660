"""``cardfit detect [--json] [--cards]``: the GPUs, driver and host of this machine, as a
table or as the stable "cardfit.detect/1" JSON document (README.md, "cardfit detect --json").

No GPU is a valid machine: NVML's reason is printed on one line with how to plan for a
what-if card instead, and the exit code is 0. ``--cards`` lists the what-if catalog.
Never imports torch.
"""

from __future__ import annotations

import json

from cardfit.core.units import fmt_bytes

BAR_WIDTH = 24
MAX_PROCESSES_SHOWN = 5


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detect",
        help="show this machine's NVIDIA GPUs, driver, RAM and CPU",
        description="Show the NVIDIA GPUs NVML sees (memory used/free and who holds it, "
                    "driver and CUDA versions) and the host (RAM, CPU, OS). Without a GPU, "
                    "says why and how to plan for a what-if card with --card/--vram.",
    )
    p.add_argument("--json", action="store_true",
                   help='print the "cardfit.detect/1" JSON document (sizes in bytes)')
    p.add_argument("--cards", action="store_true",
                   help="list the what-if GPU catalog that --card accepts instead")
    p.set_defaults(func=run)


def run(args) -> int:
    if getattr(args, "cards", False):
        return _run_cards(bool(getattr(args, "json", False)))
    from cardfit.core.hardware.machine import probe_machine

    machine = probe_machine()
    if getattr(args, "json", False):
        print(json.dumps(machine.to_json(), indent=2))
    else:
        print(format_machine(machine))
    return 0


# -- text -------------------------------------------------------------------------------------

def bar(used: int | None, total: int | None, width: int = BAR_WIDTH) -> str:
    """``[#########...............]``: ASCII, so any console encoding prints it."""
    if not total or used is None:
        return "[" + "?" * width + "]"
    filled = min(width, max(0, round(width * used / total)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def fmt_bandwidth(bps: float | None) -> str | None:
    """Decimal units, as datasheets print bandwidth: "3.35 TB/s", "1008 GB/s"."""
    if not bps:
        return None
    if bps >= 2e12:
        return f"{bps / 1e12:.2f} TB/s"
    return f"{bps / 1e9:.0f} GB/s"


def _opt(value, fmt: str) -> str | None:
    return None if value is None else fmt.format(value)


def format_gpu(g) -> list[str]:
    head = f"GPU {g.index}  {g.name or 'unknown NVIDIA GPU'}"
    traits = [t for t in (
        _opt(g.compute_capability, "cc {}"),
        None if g.bf16 is None else ("bf16" if g.bf16 else "no bf16"),
        fmt_bandwidth(g.bandwidth_bytes_per_s),
    ) if t]
    if traits:
        head += "  (" + ", ".join(traits) + ")"
    lines = [head]
    if g.error:
        lines.append(f"  error: {g.error}")
        return lines
    total, used, free = g.memory_total_bytes, g.memory_used_bytes, g.memory_free_bytes
    if total is not None:
        lines.append(f"  memory  {bar(used, total)}  {fmt_bytes(used or 0)} / {fmt_bytes(total)} used,"
                     f" {fmt_bytes(free or 0)} free")
        held = []
        procs = list(g.processes)
        if procs:
            shown = []
            for p in procs[:MAX_PROCESSES_SHOWN]:
                size = fmt_bytes(p.used_bytes) if p.used_bytes is not None else "size unknown"
                shown.append(f"{p.name or '?'} (pid {p.pid}) {size}")
            if len(procs) > MAX_PROCESSES_SHOWN:
                shown.append(f"+{len(procs) - MAX_PROCESSES_SHOWN} more")
            n = len(procs)
            held.append(f"{n} process{'es' if n != 1 else ''} {fmt_bytes(g.processes_bytes)}: "
                        + ", ".join(shown))
        unattributed = g.unattributed_bytes
        if unattributed:
            reserve = g.memory_reserved_bytes
            if reserve:
                # The driver's own reservation (NVML v2 "reserved"); the rest is memory of
                # processes NVML does not list for us (other containers, driver internals).
                reserve = min(reserve, unattributed)
                held.append(f"driver reserve {fmt_bytes(reserve)}")
                if unattributed - reserve >= 1024**2:
                    held.append(f"other/unlisted {fmt_bytes(unattributed - reserve)}")
            else:
                held.append(f"driver/other {fmt_bytes(unattributed)}")
        if held:
            tail = ""
            if not procs:
                tail = (" (NVML lists no processes here)" if "processes" in g.unsupported
                        else " (no processes)")
            lines.append("  held by " + "; ".join(held) + tail)
    else:
        lines.append("  memory  not reported by NVML")
    misc = [t for t in (
        None if g.power_draw_w is None else (
            f"{g.power_draw_w:.0f} W" + (f" / {g.power_limit_w:.0f} W" if g.power_limit_w else "")),
        _opt(g.temperature_c, "{} C"),
        _opt(g.utilization_gpu_pct, "util {}%"),
        None if g.mig_mode is None else ("MIG on: a job gets one MIG slice, not this whole GPU"
                                         if g.mig_mode else None),
        _opt(g.pci_bus_id, "PCI {}"),
    ) if t]
    if misc:
        lines.append("  " + " | ".join(misc))
    return lines


def format_host(h) -> list[str]:
    lines = []
    if h.ram_total_bytes is not None:
        ram = f"RAM     {fmt_bytes(h.ram_total_bytes)}"
        if h.ram_available_bytes is not None:
            ram += f" ({fmt_bytes(h.ram_available_bytes)} available)"
        if h.swap_total_bytes:
            ram += f", swap {fmt_bytes(h.swap_total_bytes)} ({fmt_bytes(h.swap_used_bytes or 0)} used)"
        elif h.swap_total_bytes == 0:
            ram += ", no swap"
        lines.append(ram)
    cpu = f"CPU     {h.cpu_model or 'unknown'}"
    cores = []
    if h.cpu_cores_physical:
        cores.append(f"{h.cpu_cores_physical} cores")
    if h.cpu_cores_logical:
        cores.append(f"{h.cpu_cores_logical} threads")
    if cores:
        cpu += " (" + ", ".join(cores) + ")"
    lines.append(cpu)
    lines.append(f"OS      {h.os or 'unknown'}, Python {h.python or '?'}")
    return lines


def format_machine(m) -> str:
    lines: list[str] = []
    if m.gpus:
        n = len(m.gpus)
        versions = [t for t in (_opt(m.driver_version, "driver {}"),
                                _opt(m.cuda_driver_version, "CUDA {} (driver)")) if t]
        lines.append(f"{n} NVIDIA GPU{'s' if n != 1 else ''}" + (": " + ", ".join(versions) if versions else ""))
        for g in m.gpus:
            lines.append("")
            lines.extend(format_gpu(g))
    else:
        lines.append(f"No NVIDIA GPU: {m.nvml_message} [{m.nvml_status}]")
        lines.append("Use --card NAME or --vram SIZE to plan for a what-if card "
                     "(e.g. cardfit plan MODEL --card 4090); `cardfit detect --cards` lists the cards.")
    lines.append("")
    lines.extend(format_host(m.host))
    return "\n".join(lines)


# -- the catalog ------------------------------------------------------------------------------

def _run_cards(as_json: bool) -> int:
    from cardfit.core.hardware.cards import load_catalog

    cards = load_catalog()
    if as_json:
        print(json.dumps([c.to_json() for c in cards], indent=2))
        return 0
    print(f"{'id':<24} {'name':<36} {'memory':>10} {'bandwidth':>10}  bf16  architecture")
    for c in cards:
        print(f"{c.id:<24} {c.name:<36} {fmt_bytes(c.total_bytes):>10} "
              f"{fmt_bandwidth(c.bandwidth_bytes_per_s) or '-':>10}  {'yes' if c.bf16 else 'no ':<4}  "
              f"{c.architecture}")
    print("\n--card accepts an id or a name, loosely: 4090, rtx-4090, 'RTX 4090', h100-sxm; "
          "cuda:0 is GPU 0 of this machine. Any other card: --vram SIZE.")
    return 0
