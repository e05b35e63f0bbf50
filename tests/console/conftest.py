"""Fixtures for the console tests: a real stack (aveserver, smtpscanner, sink, kavconsole)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.console import ConsoleStack, require_root_stack


@pytest.fixture
def make_console() -> Iterator[Callable[..., ConsoleStack]]:
    """make_console(console={...}, processes=1, users={...}) -> a started ConsoleStack."""
    made: list[ConsoleStack] = []

    def make(console: dict[str, object] | None = None, processes: int = 1,
             users: dict[str, tuple[str, str]] | None = None, start_console: bool = True,
             console_args: tuple[str, ...] = ()) -> ConsoleStack:
        python = require_root_stack()
        st = ConsoleStack.create(python)
        made.append(st)
        if processes > 1:
            st.scanner_args = ("--processes", str(processes))
        st.write_all(console)
        for user, (password, role) in (users or {"admin": ("correct horse battery", "admin")}).items():
            st.add_user(user, password, role)
        st.start()
        if start_console:
            st.start_console(*console_args)
        return st

    yield make
    for st in made:
        st.stop()
        st.cleanup()
