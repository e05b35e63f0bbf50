"""Licence tests: real licensemanager processes; the filter tests reuse tests/filter's real stack."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _engine_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAV_ENGINE_CACHE", str(tmp_path_factory.getbasetemp() / "engine-cache"))


@pytest.fixture
def make_stack(tmp_path: Path):  # noqa: ANN201 - the same real stack as tests/filter, stopped at teardown
    from tests.support.filter import Sink, Stack

    made: list[Stack] = []

    def make(groups: dict, general: dict | None = None, extra: dict | None = None, start: bool = True) -> Stack:
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
