"""Placeholder for `cardfit gui` until its module lands (keeps build_parser working)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="(not implemented yet)")
    p.set_defaults(func=run)


def run(args) -> int:
    print("cardfit gui: not implemented yet", file=sys.stderr)
    return 1


def run_gui(screenshot=None) -> int:
    print("cardfit: the GUI is not implemented yet", file=sys.stderr)
    return 1

