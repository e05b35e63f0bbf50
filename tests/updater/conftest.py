"""Fixtures of the keepup2date tests: a signed mirror tree, a real HTTP server serving it, and a
private engine cache (the load test and aveserver compile the database there, not in ~/.cache)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.updater import Mirror, MirrorServer


@pytest.fixture(autouse=True)
def _engine_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAV_ENGINE_CACHE", str(tmp_path_factory.getbasetemp() / "engine-cache"))


@pytest.fixture
def mirror(tmp_path: Path) -> Mirror:
    return Mirror(tmp_path / "mirror").build(daily=1)


@pytest.fixture
def server(mirror: Mirror) -> Iterator[MirrorServer]:
    srv = MirrorServer(mirror.root)
    yield srv
    srv.close()
