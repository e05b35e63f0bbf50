"""aveserver's compiled-database cache (issue 11 item 13): under [path] CachePath (FHS
/var/cache/kav4mailservers by default, removed by the package's purge), never in root's ~/.cache,
and not used when another account could write it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.config import loads_config
from tests.support.engine import REPO, Server


@pytest.fixture
def no_env_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("KAV_ENGINE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_cache_goes_to_cache_path_not_home(server: Server, no_env_cache: Path, tmp_path: Path) -> None:
    cache = tmp_path / "var-cache"
    server.write_conf(path={"CachePath": str(cache)})
    server.start()
    assert list((cache / "engine").iterdir()), "the parsed/compiled database is cached under CachePath/engine"
    assert (cache / "engine").stat().st_mode & 0o777 == 0o700
    assert not (no_env_cache / ".cache").exists()


def test_a_cache_others_can_write_is_not_used(server: Server, no_env_cache: Path, tmp_path: Path) -> None:
    cache = tmp_path / "var-cache"
    (cache / "engine").mkdir(parents=True)
    os.chmod(cache / "engine", 0o777)  # noqa: S103 - the planted, world-writable cache under test
    server.write_conf(path={"CachePath": str(cache)})
    server.start()
    assert not list((cache / "engine").iterdir())
    assert "is not a directory only this account can write; not used" in server.log.read_text()


def test_purge_removes_the_default_cache_path() -> None:
    default = loads_config("").get("path", "CachePath")
    assert default == "/var/cache/kav4mailservers"
    postrm = (REPO / "pkg/deb/debian/kav4mailservers.postrm").read_text()
    assert f"CACHE={default}" in postrm and 'rm -rf "$ETC" "$STATE" "$LOGDIR" "$CACHE"' in postrm
