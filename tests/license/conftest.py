"""Licence tests: real licensemanager processes; the filter tests reuse tests/filter's real stack."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _engine_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAV_ENGINE_CACHE", str(tmp_path_factory.getbasetemp() / "engine-cache"))


@pytest.fixture
def make_stack(tmp_path: Path):  # noqa: ANN201 - the same real stack as tests/filter, stopped at teardown
    from tests.support.filter import stacks

    with stacks(tmp_path) as make:
        yield make
