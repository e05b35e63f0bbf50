"""``kavsetup``: the installer's single front door.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module
sets ``func`` on its parser with ``set_defaults(func=...)``.  The function returns the
process exit code.  Keeping commands in separate modules keeps this file from growing
into a second copy of every feature.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Command modules, in the order ``kavsetup --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "kavsetup.commands.config",
    "kavsetup.commands.detect",
    "kavsetup.commands.install",
    "kavsetup.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kavsetup",
        description="Install, configure and integrate kav4mailservers with the local MTA.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A command whose module is not built yet is simply not offered; any other
            # import failure is a real bug and must surface.
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
