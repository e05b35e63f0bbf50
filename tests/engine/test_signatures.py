"""Every signature syntax item of .hdb/.hsb/.ndb, matched by the real engine on real bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runtime.engine.engine import DatabaseError, Engine
from runtime.engine.signatures import load_signatures
from runtime.engine.verdict import Status
from tests.support.engine import make_engine

BODY = [
    # (signature, bytes that match, bytes that must not match)
    ("0:*:6b617634", b"xxkav4yy", b"xxkav5yy"),                                # plain hex
    ("0:*:6b61??34", b"__ka\x00\x34", b"__kb\x00\x34"),                         # ?? any byte
    ("0:*:6b61763aa?", b"kav\x3a\xa5!", b"kav\x3a\xb5!"),                        # a? high nibble
    ("0:*:6b6176?5", b"kav\x75", b"kav\x76"),                                  # ?a low nibble
    ("0:*:6b6176*7a7a7a", b"kav" + b"." * 5000 + b"zzz", b"zzz......kav"),     # * any run
    ("0:*:6b6176{3}7a7a", b"kav123zz", b"kav12zz"),                           # {n}
    ("0:*:6b6176{2-4}7a7a", b"kav1234zz", b"kav12345zz"),                     # {n-m}
    ("0:*:6b6176{-3}7a7a", b"kavzz", b"kav1234zz"),                           # {-n}
    ("0:*:6b6176{3-}7a7a", b"kav" + b"-" * 900 + b"zz", b"kav12zz"),          # {n-}
    ("0:*:6b6176(31|3232|3?33)7a", b"kav22z", b"kav4z"),                      # (aa|bb) alternatives
    ("0:*:6b6176(31|3232|3?33)7a", b"kav\x33\x33z", b"kav\x43\x33z"),
    ("0:10:6b617634", b"0123456789kav4", b"012345678kav4"),                   # absolute offset
    ("0:4,3:6b617634", b"0123456kav4", b"01234567kav4"),                      # n,maxshift
    ("0:EOF-6:6b617634", b"prefix-kav4..", b"prefix-kav4."),                  # EOF-n
    ("1:*:6b617634", b"MZ......kav4", b"ELF.....kav4"),                       # target 1: PE
    ("6:*:6b617634", b"\x7fELF....kav4", b"MZ......kav4"),                    # target 6: ELF
    ("0:*:6b610076", b"__ka\x00v__", b"__ka\x01v__"),                         # NUL bytes are fine
]


@pytest.mark.parametrize(("sig", "hit", "miss"), BODY)
def test_ndb_syntax_item(tmp_path: Path, sig: str, hit: bytes, miss: bytes) -> None:
    eng = make_engine(tmp_path, ndb=f"Test.Item:{sig}\n")
    assert not eng.sigs.errors
    v = eng.scan(hit, "hit")
    assert v.status is Status.INFECTED and v.names == ["Test.Item"]
    assert v.objects[0].path == "hit"
    assert eng.scan(miss, "miss").status is Status.CLEAN



@pytest.fixture(autouse=True, params=["hyperscan", "libhs", "aho-corasick", "re"])
def prefilter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every syntax item must give the same verdict whichever prefilter runs: Hyperscan (PyPI),
    Debian's libhs.so.5 through ctypes (the .deb on amd64), Aho-Corasick (Debian's
    python3-ahocorasick, the .deb elsewhere) or plain ``re``."""
    from runtime.engine import libhs, matcher

    if request.param == "libhs":
        if not libhs.available():
            pytest.skip("libhs.so.5 (libhyperscan5) is not installed here")
        monkeypatch.setattr(matcher, "hyperscan", libhs)
        assert matcher.prefilter_name().startswith("hyperscan (libhs")
        return "hyperscan"  # the same behaviour is expected of both bindings
    if request.param == "hyperscan" and (matcher.hyperscan is None or matcher.hyperscan is libhs):
        pytest.skip("the hyperscan wheel is not installed here")
    if request.param in ("aho-corasick", "re"):
        monkeypatch.setattr(matcher, "hyperscan", None)
    if request.param == "re":
        monkeypatch.setattr(matcher, "ahocorasick", None)
    assert matcher.prefilter_name() == request.param
    return request.param

def test_ndb_min_max_flevel_fields_accepted(tmp_path: Path) -> None:
    eng = make_engine(tmp_path, ndb="A.Sig:0:*:41424344:51\nB.Sig:0:*:45464748:51:255\n")
    assert not eng.sigs.errors
    assert eng.scan(b"..EFGH..").names == ["B.Sig"]


def test_malformed_lines_reported_with_file_and_line_and_skipped(tmp_path: Path) -> None:
    ndb = "\n".join([
        "Good.One:0:*:41424344",
        "Bad.Hex:0:*:41zz",            # line 2
        "Bad.Fields:0:*",              # line 3
        "Unsup.Target:13:*:41424344",  # line 4: valid ClamAV, not implemented: counted, not an error
        "Unsup.Offset:0:VI:41424344",  # line 5: likewise
        "Bad.Jump:0:*:4142{5-2}43",    # line 6
        "Bad.Alt:0:*:41(42)43",        # line 7
        "# a comment",
        "Short:0:*:41",                # line 9
    ]) + "\n"
    hdb = "0123:5:Too.Short\n" + hashlib.md5(b"hello").hexdigest() + ":x:Bad.Size\n"
    eng = make_engine(tmp_path, ndb=ndb, hdb=hdb)
    where = [e.split(": ", 1)[0] for e in eng.sigs.errors]
    nd, hd = tmp_path / "bases" / "test.ndb", tmp_path / "bases" / "test.hdb"
    assert where == [f"{hd}:1", f"{hd}:2"] + [f"{nd}:{n}" for n in (2, 3, 6, 7, 9)]
    assert eng.sigs.unsupported == {"ndb:target-13": 1, "ndb:offset-other": 1}
    assert "unsupported: ndb:offset-other 1, ndb:target-13 1" in eng.sigs.summary()
    assert eng.scan(b"ABCD").names == ["Good.One"]


def test_hdb_md5_with_size(tmp_path: Path) -> None:
    data = b"some payload that is the malware"
    eng = make_engine(tmp_path, hdb=f"{hashlib.md5(data).hexdigest()}:{len(data)}:Test.Md5\n"
                      f"{hashlib.md5(b'other').hexdigest()}:99:Test.WrongSize\n")
    assert eng.scan(data).names == ["Test.Md5"]
    assert eng.scan(b"other").status is Status.CLEAN  # size does not match the record
    assert eng.scan(data + b"!").status is Status.CLEAN


def test_hsb_sha1_sha256_and_any_size(tmp_path: Path) -> None:
    a, b = b"first sample", b"second sample, any size"
    hsb = f"{hashlib.sha1(a).hexdigest()}:{len(a)}:Test.Sha1\n{hashlib.sha256(b).hexdigest()}:*:Test.Sha256\n"
    eng = make_engine(tmp_path, hsb=hsb)
    assert not eng.sigs.errors
    assert eng.scan(a).names == ["Test.Sha1"]
    assert eng.scan(b).names == ["Test.Sha256"]


def test_hdb_rejects_sha_and_star(tmp_path: Path) -> None:
    eng = make_engine(tmp_path, hdb=f"{hashlib.sha1(b'x').hexdigest()}:1:X\n{hashlib.md5(b'x').hexdigest()}:*:Y\n",
                      ndb="Keep:0:*:41424344\n")
    assert len(eng.sigs.errors) == 2


def test_set_without_a_single_usable_line_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "bases"
    db.mkdir()
    (db / "broken.ndb").write_text("this is not a signature\nneither:is:this\n")
    with pytest.raises(DatabaseError, match="no usable signature"):
        Engine.load(db)
    with pytest.raises(DatabaseError, match="does not exist"):
        Engine.load(tmp_path / "missing")


def test_compiled_matcher_cache_is_keyed_by_database_content(tmp_path: Path, prefilter: str) -> None:
    if prefilter != "hyperscan":
        pytest.skip("about Hyperscan's compiled-database cache and refusals; other prefilters compile nothing")
    cache = tmp_path / "cache"
    db = tmp_path / "bases"
    db.mkdir()
    (db / "a.ndb").write_text("One:0:*:41424344\n")
    first = Engine.load(db, cache_dir=cache)
    assert first.matcher.from_cache  # compiled once, by the child process that built the cache entry
    compiled = list(cache.glob(f"db-{first.sigs.digest}/ndb-*.hs"))
    assert len(compiled) == 1
    again = Engine.load(db, cache_dir=cache)
    assert again.matcher.from_cache and again.scan(b"xABCD").names == ["One"]
    (db / "a.ndb").write_text("Two:0:*:45464748\n")  # new content -> new key, no stale matcher
    changed = Engine.load(db, cache_dir=cache)
    assert list(cache.glob("db-*/ndb-*.hs")) == list(cache.glob(f"db-{changed.sigs.digest}/ndb-*.hs")) != compiled
    assert changed.scan(b"xABCD").status is Status.CLEAN and changed.scan(b"EFGH").names == ["Two"]
    assert sorted(p.stat().st_mode & 0o777 for p in [cache]) == [0o700]


def test_signature_count_and_digest(tmp_path: Path) -> None:
    eng = make_engine(tmp_path, ndb="A:0:*:41424344\n", hdb=f"{hashlib.md5(b'q').hexdigest()}:1:B\n")
    sigs = load_signatures(tmp_path / "bases")
    assert eng.record_count == 2 and sigs.digest == eng.sigs.digest and len(sigs.digest) == 64


def test_signature_hyperscan_refuses_still_matches_through_fallback(tmp_path: Path, prefilter: str) -> None:
    if prefilter != "hyperscan":
        pytest.skip("about Hyperscan's compiled-database cache and refusals; other prefilters compile nothing")
    # Hyperscan rejects bounded repeats this large; the signature must still work (Python re).
    eng = make_engine(tmp_path, ndb="Huge.Jump:0:*:4142{70000}4344\nNormal:0:*:45464748\n")
    assert not eng.sigs.errors and eng.matcher.fallback == [0]
    assert eng.scan(b"AB" + b"." * 70000 + b"CD").names == ["Huge.Jump"]
    assert eng.scan(b"AB" + b"." * 69999 + b"CD").status is Status.CLEAN
    assert eng.scan(b"xxEFGHxx").names == ["Normal"]
    again = make_engine(tmp_path, ndb="Huge.Jump:0:*:4142{70000}4344\nNormal:0:*:45464748\n")
    assert again.matcher.from_cache and again.matcher.fallback == [0]
    assert again.scan(b"AB" + b"." * 70000 + b"CD").names == ["Huge.Jump"]
