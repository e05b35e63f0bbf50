"""Fixture roots for the detect tests, built once per session from tests/fixtures/roots/.

Debian roots unpack the real packages (tests/support/debian_pkgs.py, cached under
~/.cache/kav4ms/debs); when apt cannot reach them the dependent tests skip with apt's reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# tests/support is imported as ``tests.support``: make the repository root importable even when
# pytest is started as ``pytest`` rather than ``python3 -m pytest`` from the repository.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.debian_pkgs import PackageUnavailable  # noqa: E402
from tests.support.fixture_roots import build  # noqa: E402


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    base = tmp_path_factory.mktemp("roots")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            try:
                built[name] = build(name, base / name)
            except PackageUnavailable as exc:
                pytest.skip(f"fixture {name}: Debian package not reachable: {exc}")
        return built[name]

    return get
