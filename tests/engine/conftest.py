"""Fixtures for the engine tests (helpers live in tests/support/engine.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.engine.engine import Engine
from tests.support.engine import Server


@pytest.fixture(autouse=True)
def _engine_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAV_ENGINE_CACHE", str(tmp_path_factory.getbasetemp() / "engine-cache"))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    from tests.support.engine import make_engine

    return make_engine(tmp_path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "srv")
    srv.root.mkdir()
    (srv.root / "bases").mkdir()
    (srv.root / "bases" / "test.ndb").write_text("Test.Body.Sig:0:*:6b61763474657374{2-8}7369676e\n")
    try:
        yield srv
    finally:
        srv.stop()
