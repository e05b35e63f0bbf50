"""``kavsetup``: the installer's single front door.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module sets
``func`` on its parser with ``set_defaults(func=...)``, and the function returns the process exit
code.  Which module implements which command is the table in kavsetup/commands/__init__.py.

Start-up: only the module of the command being run is imported; the others are listed from the
table (name and help) without importing them, so ``kavsetup detect`` does not load the installer
and ``kavsetup --help`` loads nothing (``python -X importtime -m kavsetup.cli --help``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kavsetup.commands import COMMANDS


def _command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), if known."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: full for the command it names, a one-line entry for every other
    one.  Without ``argv`` every command is registered in full (tests, documentation)."""
    parser = argparse.ArgumentParser(
        prog="kavsetup",
        description="Install, configure and integrate kav4mailservers with the local MTA.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = _command(argv) if argv is not None else None
    registered: set[str] = set()
    for name, (module_name, help_text) in COMMANDS.items():
        if module_name in registered:
            continue
        if argv is None or (wanted is not None and COMMANDS[wanted][0] == module_name):
            importlib.import_module(module_name).register(sub)
            registered.add(module_name)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("kavsetup: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
