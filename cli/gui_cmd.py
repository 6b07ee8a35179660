"""`cardfit gui`: open the advisor window (also what `cardfit` with no command does).

`--screenshot FILE` renders the populated window offscreen to a PNG and exits (docs and
checks); `--model`, `--card`/`--vram` and the workload flags set what it opens on.
Qt is imported only when the command runs, so `cardfit --help` and `cardfit detect` stay fast.
"""

from __future__ import annotations

import re

from cardfit.cli.workload_args import add_card_args, add_workload_args, workload_from_args
from cardfit.core.units import GiB, parse_size

_DETECTED = re.compile(r"^\s*(?:cuda|gpu|nvidia|device)\s*[:#]?\s*(\d+)\s*$", re.IGNORECASE)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gui", help="open the app (the default with no command)",
        description="Open the advisor window. With --screenshot, render it offscreen to a PNG and exit.")
    p.add_argument("--screenshot", metavar="FILE", help="render the populated window to FILE (PNG) and exit")
    p.add_argument("--size", metavar="WxH", help="window size for --screenshot (default 1440x920)")
    p.add_argument("--model", metavar="MODEL", help="select this model (catalog id, path or Hub id)")
    add_card_args(p)
    add_workload_args(p)
    p.set_defaults(func=run)


def card_key_from_args(card: str | None, vram: str | None) -> str | None:
    """The card picker's key for --card NAME / --vram SIZE."""
    from cardfit.core.errors import UsageError

    if card and vram:
        raise UsageError("pass either --card or --vram, not both")
    if vram:
        return f"custom:{parse_size(vram) / GiB:g}"
    if card:
        m = _DETECTED.match(card)
        if m:
            return f"gpu:{int(m.group(1))}"
        from cardfit.core.hardware.cards import find_card

        return f"catalog:{find_card(card).id}"
    return None


def run(args) -> int:
    from cardfit.core.errors import UsageError
    from cardfit.core.estimate.workload import Workload

    w = workload_from_args(args)
    size = None
    if args.size:
        m = re.match(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$", args.size)
        if not m:
            raise UsageError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 1440x920")
        size = (int(m.group(1)), int(m.group(2)))
    return run_gui(screenshot=args.screenshot, model=args.model,
                   workload=None if w == Workload() else w,
                   card=card_key_from_args(args.card, args.vram), size=size)


def run_gui(screenshot=None, model=None, workload=None, card=None, size=None) -> int:
    from cardfit.gui.app import run as run_app

    return run_app(screenshot=screenshot, model=model, workload=workload, card=card, size=size)
