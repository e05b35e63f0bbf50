"""Fixtures for the smtpscanner tests: real aveserver, real smtpscanner, a real SMTP sink."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.filter import Sink, Stack


@pytest.fixture(autouse=True)
def _engine_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAV_ENGINE_CACHE", str(tmp_path_factory.getbasetemp() / "engine-cache"))


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """make_stack(groups, general=..., extra=...) -> a started Stack; all stopped at teardown."""
    made: list[Stack] = []

    def make(groups: dict[str, dict[str, object]], general: dict[str, object] | None = None,
             extra: dict[str, dict[str, object]] | None = None, start: bool = True) -> Stack:
        sink = Sink().start()
        st = Stack(tmp_path / f"root{len(made)}", sink)
        made.append(st)
        st.write(groups, general, extra)
        if start:
            st.start()
        return st

    yield make
    for st in made:
        st.stop()
        st.sink.stop()
