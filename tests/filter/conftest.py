"""Fixtures for the smtpscanner tests: real aveserver, real smtpscanner, a real SMTP sink."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.filter import Stack, stacks


@pytest.fixture(autouse=True)
def _engine_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAV_ENGINE_CACHE", str(tmp_path_factory.getbasetemp() / "engine-cache"))


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """make_stack(groups, general=..., extra=...) -> a started Stack; all stopped at teardown."""
    with stacks(tmp_path) as make:
        yield make
