"""How every installer command that takes the root's lock ends: one line on stderr and an exit
status from one table (docs/integration.md), the plan's diff and notes on stdout.  Shared by
``install``/``uninstall``/``recover`` and ``setup``/``reconfigure`` so they cannot drift apart."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from kavsetup.integrate.edits import EditError
from kavsetup.integrate.journal import JournalError
from kavsetup.integrate.settings import SettingsError
from kavsetup.integrate.transaction import LockBusy, Outcome, Transaction
from kavsetup.mta import CompileError


def err(msg: str) -> None:
    print(f"kavsetup: {msg}", file=sys.stderr)


#: Exit status per failure, first match wins (docs/integration.md): 3 another run holds the lock,
#: 2 refused before anything was touched, 1 failed (and rolled back where it had started).
EXIT_CODES: tuple[tuple[tuple[type[Exception], ...], int], ...] = (
    ((LockBusy,), 3),
    ((CompileError, SettingsError), 2),
    ((EditError, JournalError, OSError), 1),
)


def exit_codes(command: Callable[..., int]) -> Callable[..., int]:
    """Turn the installer's expected failures into one line on stderr and the exit status above,
    the same way for every command that takes the lock."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> int:
        try:
            return command(*args, **kwargs)
        except tuple(t for types, _ in EXIT_CODES for t in types) as exc:
            err(str(exc))
            return next(code for types, code in EXIT_CODES if isinstance(exc, types))

    return run


def report(out: Outcome) -> int:
    if out.diff:
        sys.stdout.write(out.diff)
    for n in out.notes:
        print(f"note: {n}")
    (print if out.ok else err)(out.message)
    return 0 if out.ok else 1


def recover_first(tx: Transaction) -> None:
    state = tx.pending_state()
    if state and state != "installed":
        print(f"found an interrupted run (journal state {state!r}); recovering first")
        report(tx.recover())
