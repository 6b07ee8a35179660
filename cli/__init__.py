"""The command line: a thin argparse layer over ``cardfit.core``.

Each subcommand lives in its own module with ``register(subparsers)``, which adds its
parser and sets ``func(args) -> int``. With no subcommand, cardfit opens the GUI.
Errors a user can cause are ``CardfitError``s: one line on stderr (or an ``error``
object on stdout with ``--json``) and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from cardfit import __version__
from cardfit.core.errors import CardfitError

# Order is the order of `cardfit --help`.
SUBCOMMANDS = ["detect", "models", "estimate", "plan", "test", "report", "gui", "desktop"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardfit",
        description="Which LLMs fit your GPU, and how. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"cardfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"cardfit.cli.{name}_cmd").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from cardfit.cli.gui_cmd import run_gui

        return run_gui(screenshot=None)
    try:
        return int(args.func(args) or 0)
    except CardfitError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.to_json()}, indent=2))
        else:
            print(f"cardfit {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cardfit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cardfit models | head`: the reader left; that is not an error of ours.
        sys.stderr.close()
        return 0
