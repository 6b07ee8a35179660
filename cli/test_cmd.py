"""Placeholder for `cardfit test` until its module lands (keeps build_parser working)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("test", help="(not implemented yet)")
    p.set_defaults(func=run)


def run(args) -> int:
    print("cardfit test: not implemented yet", file=sys.stderr)
    return 1

