"""The sub-commands of ``kavsetup``: which module implements each, and its one-line help.

The table lives here, apart from the modules, so ``kavsetup --help`` can list every command and
``kavsetup detect`` can run without importing the installer, the configuration compiler or the
demo (kavsetup/cli.py imports only the module of the command being run).  Each module's
``register(subparsers)`` adds its parsers through :func:`add_parser`, so the help is written once.
"""

from __future__ import annotations

import argparse
from typing import Any

#: command -> (module, help), in the order ``kavsetup --help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("kavsetup.commands.config", "compile, check, show and edit kav4mailservers.conf"),
    "detect": ("kavsetup.commands.detect", "report the OS, mail server(s), versions and files (read-only)"),
    "install": ("kavsetup.commands.install", "integrate kav4mailservers with the mail server (guide 4.4)"),
    "setup": ("kavsetup.commands.setup", "the console setup: ask, show the diff, confirm, integrate (guide 3.3, 3.4)"),
    "reconfigure": ("kavsetup.commands.setup", "change the setup answers on an integrated system, as one change"),
    "uninstall": ("kavsetup.commands.install", "undo the integration (guide chapter 7)"),
    "status": ("kavsetup.commands.install", "is kav4mailservers integrated, and with what"),
    "recover": ("kavsetup.commands.install", "finish or roll back an interrupted install/uninstall"),
    "run": ("kavsetup.commands.run", "run the daemons in the foreground (containers without an init system)"),
    "doctor": ("kavsetup.commands.doctor", "send the EICAR test through the mail path and say where it stops"),
    "pop3": ("kavsetup.commands.pop3", "scan POP3 mail from external mailboxes: fetchmail entries (guide 6.5)"),
    "demo": ("kavsetup.commands.demo", "run aveserver + smtpscanner against a local sink and show the results"),
}


def add_parser(subparsers: argparse._SubParsersAction, name: str,  # type: ignore[type-arg]
               **kwargs: Any) -> argparse.ArgumentParser:
    """``subparsers.add_parser(name)`` with the command's help from :data:`COMMANDS`."""
    return subparsers.add_parser(name, help=COMMANDS[name][1], **kwargs)
