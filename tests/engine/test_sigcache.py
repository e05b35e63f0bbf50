"""The compiled signature cache (runtime/engine/sigcache.py, issue 12 item 4): a warm start maps
the entry of the database's content and parses signatures only when a prefilter reports them;
a CVD is verified at every start whatever the cache holds; a damaged entry is rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.engine import sigcache
from runtime.engine.engine import DatabaseError, Engine
from tests.support.clamav import build_cvd, make_test_key

NDB = b"Body.One:0:*:6b617634{2-6}6d61726b\nBody.Two:7:*:68656c6c6f20776f726c64\n"
LDB = b"Logic.One;Engine:51-255,Target:0;0&1;6c6f6769636f6e65;74776f7061727473::i\n"
SAMPLE = b"xx kav4--mark and logicone, TWOPARTS yy"


def _cvd(tmp: Path, key: object, ndb: bytes = NDB) -> Path:
    db = tmp / "bases"
    db.mkdir(exist_ok=True)
    build_cvd(db / "main.cvd", {"main.ndb": ndb, "main.ldb": LDB, "main.info": b"x\n"}, key, version=3)
    return db


def test_warm_start_maps_the_entry_and_parses_on_demand(tmp_path: Path) -> None:
    key = make_test_key()
    db = _cvd(tmp_path, key)
    cache = tmp_path / "cache"
    cold = Engine.load(db, cache_dir=cache, key=key.public)
    assert sorted(cold.scan(SAMPLE).names) == ["Body.One", "Logic.One"]
    entries = list(cache.glob("db-*"))
    assert [e.name for e in entries] == [f"db-{cold.sigs.digest}"]
    assert {"hashes.bin", "records.bin", "meta.json", "prefilter.json"} <= {p.name for p in entries[0].iterdir()}
    warm = Engine.load(db, cache_dir=cache, key=key.public)
    assert isinstance(warm.sigs.body, sigcache.Records) and isinstance(warm.sigs.logical, sigcache.Records)
    assert warm.sigs.body._memo == {} and warm.sigs.logical._memo == {}  # nothing parsed to start
    assert warm.sigs.body.line(1) == (f"{db / 'main.cvd'}/main.ndb:2", NDB.decode().splitlines()[1])
    assert sorted(warm.scan(SAMPLE).names) == ["Body.One", "Logic.One"]
    assert warm.scan(b"say HELLO   World").names == ["Body.Two"]  # target 7: normalised text
    assert warm.sigs.summary() == cold.sigs.summary()
    assert warm.sigs.names() == ["Body.One", "Body.Two", "Logic.One"]
    assert warm.sigs.containers == cold.sigs.containers


def test_cvd_verified_at_every_start_even_when_cached(tmp_path: Path) -> None:
    key = make_test_key()
    db = _cvd(tmp_path, key)
    cache = tmp_path / "cache"
    Engine.load(db, cache_dir=cache, key=key.public)
    raw = bytearray((db / "main.cvd").read_bytes())
    raw[-20] ^= 0x01  # one byte of the payload: its MD5 no longer matches the header
    (db / "main.cvd").write_bytes(bytes(raw))
    with pytest.raises(DatabaseError, match=r"main\.cvd: MD5 of the content"):
        Engine.load(db, cache_dir=cache, key=key.public)
    other = make_test_key(bits=1536)  # another key (make_test_key is cached per size)
    assert other.n != key.n
    _cvd(tmp_path, key)
    with pytest.raises(DatabaseError, match=r"main\.cvd"):
        Engine.load(db, cache_dir=cache, key=other.public)  # the cache never stands in for the signature


def test_new_content_new_entry_old_pruned_and_damaged_entry_rebuilt(tmp_path: Path) -> None:
    key = make_test_key()
    db = _cvd(tmp_path, key)
    cache = tmp_path / "cache"
    first = Engine.load(db, cache_dir=cache, key=key.public)
    _cvd(tmp_path, key, ndb=b"Body.New:0:*:6e65776e65776e6577\n")
    second = Engine.load(db, cache_dir=cache, key=key.public)
    assert second.sigs.digest != first.sigs.digest
    assert [e.name for e in cache.glob("db-*")] == [f"db-{second.sigs.digest}"]
    assert second.scan(b"..newnewnew..").names == ["Body.New"]
    entry = cache / f"db-{second.sigs.digest}"
    (entry / "records.bin").write_bytes(b"garbage")  # unreadable: parsed again and rewritten
    third = Engine.load(db, cache_dir=cache, key=key.public)
    assert third.scan(b"..newnewnew..").names == ["Body.New"]
    assert (entry / "records.bin").read_bytes().startswith(b"KAVRECS1")
    assert not list(cache.glob(".db-*"))  # no half-built entry left behind


def test_another_binding_compiles_its_matchers_in_a_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The .deb (libhs.so.5) starting on an entry the venv (the wheel) wrote: its own compiled
    matchers are built in a child process too, never in the caller's heap."""
    from runtime.engine import libhs, matcher

    if matcher.hyperscan is None or matcher.hyperscan is libhs or not libhs.available():
        pytest.skip("needs both the hyperscan wheel and libhs.so.5")
    key = make_test_key()
    db = _cvd(tmp_path, key)
    cache = tmp_path / "cache"
    Engine.load(db, cache_dir=cache, key=key.public)
    monkeypatch.setattr(matcher, "hyperscan", libhs)
    other = Engine.load(db, cache_dir=cache, key=key.public)
    assert other.matcher.from_cache  # compiled by the child, only loaded here
    assert len(list(cache.glob("db-*/compiled-*"))) == 2
    assert sorted(other.scan(SAMPLE).names) == ["Body.One", "Logic.One"]
