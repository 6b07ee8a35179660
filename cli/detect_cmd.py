"""Placeholder for `cardfit detect` until its module lands (keeps build_parser working)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("detect", help="(not implemented yet)")
    p.set_defaults(func=run)


def run(args) -> int:
    print("cardfit detect: not implemented yet", file=sys.stderr)
    return 1

