"""``cardfit desktop [install|uninstall|status] [--uninstall] [--data-home DIR] [--json]``:
puts cardfit in the user's applications menu (Linux), or takes it out again.

The entry goes to $XDG_DATA_HOME/applications (default ~/.local/share/applications) and
the icon to $XDG_DATA_HOME/icons/hicolor/scalable/apps; nothing needs root.
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "desktop", help="add cardfit to (or remove it from) your applications menu (Linux)",
        description="Install a desktop entry and the app icon under $XDG_DATA_HOME (default "
                    "~/.local/share), so cardfit shows in the applications menu; its Exec line "
                    "names the launcher of this install. `uninstall` (or --uninstall) removes them.")
    p.add_argument("action", nargs="?", choices=("install", "uninstall", "status"), default="install",
                   help="what to do (default: install)")
    p.add_argument("--uninstall", action="store_true", help="the same as the `uninstall` action")
    p.add_argument("--data-home", metavar="DIR",
                   help="the data root to use instead of $XDG_DATA_HOME / ~/.local/share")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from cardfit.core import desktop
    from cardfit.core.errors import UsageError

    action = args.action
    if args.uninstall:
        if action not in ("install", "uninstall"):  # "install" is only the default here
            raise UsageError(f"--uninstall does not go with `{action}`")
        action = "uninstall"
    removed = []
    if action == "install":
        p = desktop.install(args.data_home)
    elif action == "uninstall":
        p, removed = desktop.uninstall(args.data_home)
    else:
        p = desktop.paths(args.data_home)

    if args.json:
        doc = {"schema": "cardfit.desktop/1", "action": action, **p.to_json()}
        if action == "uninstall":
            doc["removed"] = [str(x) for x in removed]
        print(json.dumps(doc, indent=2))
        return 0
    if action == "install":
        print(f"installed the desktop entry {p.entry}")
        print(f"installed the icon          {p.icon}")
        print("cardfit is in your applications menu now (some desktops show it after the next log-in)")
    elif action == "uninstall":
        if removed:
            for path in removed:
                print(f"removed {path}")
        else:
            print(f"nothing to remove: no cardfit desktop entry in {p.entry.parent}")
    else:
        state = "installed" if p.entry.is_file() else "not installed"
        print(f"desktop entry: {state} ({p.entry})")
        print(f"icon:          {'installed' if p.icon.is_file() else 'not installed'} ({p.icon})")
    return 0
