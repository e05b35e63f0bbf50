"""ClamAV's database formats in the engine (issue 12) and linear-time matching (issue 11, item 12)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runtime.engine import libhs, matcher
from runtime.engine.engine import DatabaseError, Engine
from runtime.engine.limits import Limits
from runtime.engine.verdict import Status
from tests.support.clamav import build_cvd, make_pe, make_test_key

WORST = "Worst.Shape:0:*:41414141*42424242*43434343\n"
DENSE = "Dense.Shape:0:0,9999999:4141{1-4}4141{2-8}4343\n"  # an offset: every prefilter hands it on


@pytest.fixture(params=["hyperscan", "libhs", "aho-corasick"])
def prefilter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """With Hyperscan (PyPI), Debian's libhs.so.5 through ctypes (the .deb on amd64) and
    Debian's Aho-Corasick (the .deb elsewhere)."""
    if request.param == "libhs":
        if not libhs.available():
            pytest.skip("libhs.so.5 (libhyperscan5) is not installed here")
        monkeypatch.setattr(matcher, "hyperscan", libhs)
        return request.param
    if request.param == "hyperscan" and (matcher.hyperscan is None or matcher.hyperscan is libhs):
        pytest.skip("the hyperscan wheel is not installed here")
    if request.param == "aho-corasick":
        monkeypatch.setattr(matcher, "hyperscan", None)
    return request.param


def load(tmp: Path, files: dict[str, str], limits: Limits | None = None, **kw: object) -> Engine:
    db = tmp / "bases"
    db.mkdir(exist_ok=True)
    for name, text in files.items():
        (db / name).write_text(text)
    return Engine.load(db, limits, cache_dir=tmp / "cache", **kw)  # type: ignore[arg-type]


# -- issue 11 item 12: linear time, MaxScanTime inside the worker ---------------------------------
def test_worst_shape_1mb_within_maxscantime(tmp_path: Path, prefilter: str) -> None:
    eng = load(tmp_path, {"w.ndb": WORST}, Limits(max_time=1))
    crafted = b"AAAA" + b"BBBB" * (1 << 18)  # 1 MiB: the backtracking translation took 8.6 s for 128 KiB
    v = eng.scan(crafted, "crafted")
    assert v.status is Status.CLEAN, v.objects  # finished, not stopped by the 1 s limit
    assert eng.scan(crafted + b"CCCC", "hit").names == ["Worst.Shape"]


def test_maxscantime_stops_matching_midway(tmp_path: Path, prefilter: str) -> None:
    """A dense input against bounded gaps is linear but long: the limit fires inside the matcher."""
    eng = load(tmp_path, {"d.ndb": DENSE}, Limits(max_time=0.01))
    v = eng.scan(b"A" * (4 << 20) + b"CC", "dense")
    assert v.status is Status.ERROR
    assert "scan time limit" in v.objects[0].name


# -- formats -----------------------------------------------------------------------------------
def test_mdb_msb_section_hashes(tmp_path: Path) -> None:
    sect = b"\x90" * 64 + b"payload of section one"
    pe = make_pe([sect, b"other section"])
    padded = sect + b"\0" * (-len(sect) % 0x200)
    eng = load(tmp_path, {
        "t.mdb": f"{len(padded)}:{hashlib.md5(padded).hexdigest()}:Test.Sect.Md5\n",
        "t.msb": f"*:{hashlib.sha256(padded).hexdigest()}:Test.Sect.Sha256:73\n",
    })
    assert eng.scan(pe).names == ["Test.Sect.Md5", "Test.Sect.Sha256"]
    assert eng.scan(padded).status is Status.CLEAN  # the bytes alone are not a PE


def test_hash_star_size_and_sha(tmp_path: Path) -> None:
    data = b"hash me"
    eng = load(tmp_path, {"t.hdb": f"{hashlib.md5(data).hexdigest()}:*:Test.Star:73\n",
                          "t.hsb": f"{hashlib.sha1(b'x').hexdigest()}:1:Test.Sha1\n"})
    assert eng.scan(data).names == ["Test.Star"]
    assert eng.scan(b"x").names == ["Test.Sha1"]


def test_only_digests_a_record_could_match_are_computed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: a digest is computed only for algorithms with a record of the object's size (or
    ``*``), so a database of sized MD5 records costs nothing for objects of other sizes — and a
    record that does apply is still found, whatever the algorithm."""
    sized, anysize, sha1_sized = b"sized object", b"any size", b"sha1 sized"
    eng = load(tmp_path, {
        "t.hdb": f"{hashlib.md5(sized).hexdigest()}:{len(sized)}:Test.Md5.Sized\n",
        "t.hsb": (f"{hashlib.sha256(anysize).hexdigest()}:*:Test.Sha256.Any:73\n"
                  f"{hashlib.sha1(sha1_sized).hexdigest()}:{len(sha1_sized)}:Test.Sha1.Sized\n"),
    })
    from runtime.engine import engine as engine_mod

    computed: list[tuple[str, int]] = []
    real_new = hashlib.new

    def counting_new(name: str, data: bytes = b"", **kw: object) -> object:
        computed.append((name, len(data)))
        return real_new(name, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_mod.hashlib, "new", counting_new)
    table = eng.sigs.table
    assert table.wants("file", len(sized)) == ("md5", "sha256")
    assert table.wants("file", len(sha1_sized)) == ("sha1", "sha256")
    assert table.wants("file", 7777) == ("sha256",)
    assert table.algorithms("file") == ("md5", "sha1", "sha256")
    assert eng.sigs.hash_name("file", hashlib.md5(sized).hexdigest(), len(sized)) == "Test.Md5.Sized"

    assert eng.scan(sized).names == ["Test.Md5.Sized"]
    assert eng.scan(anysize).names == ["Test.Sha256.Any"]
    assert eng.scan(sha1_sized).names == ["Test.Sha1.Sized"]
    computed.clear()
    assert eng.scan(b"x" * 7777).status is Status.CLEAN
    assert [name for name, _n in computed] == ["sha256"]  # neither MD5 nor SHA-1 has a 7777-byte record


def test_a_sized_database_hashes_nothing_of_other_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"y" * 100
    eng = load(tmp_path, {"t.hdb": f"{hashlib.md5(data).hexdigest()}:100:Test.Md5\n"
                                   f"{'0' * 32}:5000000:Test.Big\n"})
    from runtime.engine import engine as engine_mod

    computed: list[str] = []
    real_new = hashlib.new
    monkeypatch.setattr(engine_mod.hashlib, "new",
                        lambda name, d=b"", **kw: computed.append(name) or real_new(name, d, **kw))
    assert eng.scan(b"y" * 101).status is Status.CLEAN
    assert computed == []
    assert eng.scan(data).names == ["Test.Md5"]
    assert computed == ["md5"]
    assert eng.sigs.table.wants("section", 100) == ()  # no section records at all


LDB = "\n".join([
    "Ldb.And;Engine:51-255,Target:0;0&1;6b617634;7369676e",
    "Ldb.Count;Target:0;0>2;78797a",                                  # more than 2 'xyz'
    "Ldb.Exact;Target:0;(0|1)=3,2;71717171;72727272",                 # 3 matches, 2 distinct
    "Ldb.Nocase;Target:0;0;68656c6c6f776f726c64::i",
    "Ldb.Wide;Target:0;0;77696465737472::w",
    "Ldb.Word;Target:0;0;776f7264::f",
    "Ldb.Offset;Target:0;0;EOF-4:656e6421",
    "Ldb.Pcre;Target:0;0&1;6162636465;0/ab(cd)+e[0-9]{3}/",
    "Ldb.Size;Engine:51-255,Target:0,FileSize:10-20;0;73697a6564",
    "Ldb.Pe;Target:1;0;70656f6e6c79",
    "Ldb.Unsupported;Engine:51-255,Target:1,EntryPoint:0-100;0;41424344",
    "Ldb.Future;Engine:250-255,Target:0;0;41424344",
]) + "\n"

LDB_CASES = [
    (b"..kav4..sign..", ["Ldb.And"]),
    (b"..kav4..", []),
    (b"xyz xyz xyz", ["Ldb.Count"]),
    (b"xyz xyz", []),
    (b"qqqq rrrr qqqq", ["Ldb.Exact"]),
    (b"qqqq qqqq qqqq", []),  # 3 matches but one distinct subsignature
    (b"-- HeLLoWoRLD --", ["Ldb.Nocase"]),
    (b"w\0i\0d\0e\0s\0t\0r\0", ["Ldb.Wide"]),
    (b"widestr", []),  # w without a: only the wide form
    (b"a word here", ["Ldb.Word"]),
    (b"swordfish", []),
    (b"the end!", ["Ldb.Offset"]),
    (b"end! not at the end", []),
    (b"abcde .. abcdcde123", ["Ldb.Pcre"]),
    (b"abcde .. abcdcdeX23", []),
    (b"12345sized", ["Ldb.Size"]),
    (b"sized" + b"." * 30, []),
]


@pytest.mark.parametrize(("data", "names"), LDB_CASES)
def test_ldb(tmp_path: Path, data: bytes, names: list[str]) -> None:
    eng = load(tmp_path, {"t.ldb": LDB})
    assert not eng.sigs.errors
    assert eng.scan(data).names == names


def test_ldb_target_and_unsupported_counted(tmp_path: Path) -> None:
    eng = load(tmp_path, {"t.ldb": LDB, "t.cbc": "ClamBCaa...\nClamBCbb...\n", "t.wdb": "X:a:b\n"})
    assert eng.scan(make_pe([b"peonly"])).names == ["Ldb.Pe"]
    assert eng.scan(b"peonly").status is Status.CLEAN
    assert eng.sigs.unsupported == {"ldb:tdb-EntryPoint": 1, "ldb:flevel": 1, "bytecode": 2, "phishing": 1}
    assert "unsupported: bytecode 2, ldb:flevel 1, ldb:tdb-EntryPoint 1, phishing 1" in eng.sigs.summary()


def test_targets_mail_html_ascii(tmp_path: Path) -> None:
    eng = load(tmp_path, {"t.ndb": "Mail.Sig:4:*:6d61696c626f6479\n"      # "mailbody" in a mail
                                   "Html.Sig:3:*:3c623e626f6c64\n"          # "<b>bold" normalised
                                   "Text.Sig:7:*:6f6e65206c696e65\n"})       # "one line" normalised
    assert eng.scan(b"From: a@b\nSubject: x\n\nmailbody\n").names == ["Mail.Sig"]
    assert eng.scan(b"mailbody").status is Status.CLEAN
    assert eng.scan(b"<html><B>  BOLD</B></html>").names == ["Html.Sig"]
    assert eng.scan(b"ONE\r\n\t LINE").names == ["Text.Sig"]
    assert eng.scan(b"ONE\0LINE").status is Status.CLEAN  # binary: not text


def test_fp_and_ign2_across_databases(tmp_path: Path) -> None:
    good, bad = b"innocent ABCD file", b"malware ABCD file"
    eng = load(tmp_path, {
        "a.ndb": "Body.ABCD:0:*:41424344\nBody.EFGH:0:*:45464748\n",
        "b.fp": f"{hashlib.md5(good).hexdigest()}:{len(good)}:Allowed.File\n",
        "c.sfp": f"{hashlib.sha256(b'EFGH').hexdigest()}:*:Allowed.Too\n",
        "d.ign2": "Body.Never\n",
    })
    assert eng.scan(bad).names == ["Body.ABCD"]
    assert eng.scan(good).status is Status.CLEAN
    assert eng.scan(b"EFGH").status is Status.CLEAN
    (tmp_path / "bases" / "d.ign2").write_text("Body.ABCD\n")
    eng = Engine.load(tmp_path / "bases")
    assert eng.scan(bad).status is Status.CLEAN and eng.sigs.dropped == 1
    assert "1 body/logical dropped by .ign/.ign2 (1 names" in eng.sigs.summary()


# -- containers --------------------------------------------------------------------------------
def test_cvd_and_cld_side_by_side(tmp_path: Path) -> None:
    key = make_test_key()
    db = tmp_path / "bases"
    db.mkdir()
    build_cvd(db / "main.cvd", {"main.info": b"x\n", "main.ndb": b"Main.Sig:0:*:6d61696e736967\n",
                                "main.ldb": b"Main.Ldb;Target:0;0&1;6161616161;6262626262\n"})
    build_cvd(db / "daily.cld", {"daily.hdb": f"{hashlib.md5(b'daily').hexdigest()}:5:Daily.Hash\n".encode(),
                                 "daily.ign2": b"Main.Ldb\n"})
    (db / "local.ndb").write_text("Local.Sig:0:*:6c6f63616c\n")
    eng = Engine.load(db, key=key.public)
    assert eng.scan(b"..mainsig..").names == ["Main.Sig"]
    assert eng.scan(b"daily").names == ["Daily.Hash"]
    assert eng.scan(b"aaaaa bbbbb").status is Status.CLEAN  # dropped by daily's .ign2
    assert eng.scan(b"local").names == ["Local.Sig"]
    assert len(eng.sigs.containers) == 2 and "main.cvd version 1" in eng.sigs.containers[1]


def test_tampered_cvd_refused_by_name(tmp_path: Path) -> None:
    db = tmp_path / "bases"
    db.mkdir()
    path = build_cvd(db / "main.cvd", {"main.ndb": b"Main.Sig:0:*:6d61696e736967\n"})
    assert Engine.load(db, key=make_test_key().public).record_count == 1
    with pytest.raises(DatabaseError, match=r"main\.cvd: digital signature does not match"):
        Engine.load(db)  # ClamAV's key does not verify our test container
    raw = bytearray(path.read_bytes())
    raw[-30] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(DatabaseError, match=r"main\.cvd: MD5 of the content"):
        Engine.load(db, key=make_test_key().public)


def test_newer_of_cvd_and_cld_wins(tmp_path: Path) -> None:
    db = tmp_path / "bases"
    db.mkdir()
    build_cvd(db / "daily.cvd", {"daily.ndb": b"Old.Sig:0:*:6f6c64736967\n"}, version=5)
    build_cvd(db / "daily.cld", {"daily.ndb": b"New.Sig:0:*:6e6577736967\n"}, version=7)
    eng = Engine.load(db, key=make_test_key().public)
    assert [b.name for b in eng.sigs.body] == ["New.Sig"]


def test_compiled_cache_keyed_by_content(tmp_path: Path) -> None:
    """A restart of unchanged files maps the kept entry (bad lines still reported); a change rebuilds it."""
    data = b"cached object"
    hdb = f"{hashlib.md5(data).hexdigest()}:{len(data)}:Test.Cached\nnot a hash line\n"
    eng = load(tmp_path, {"t.hdb": hdb, "u.mdb": "12:" + "ab" * 16 + ":Test.Sect\n"})
    assert eng.scan(data).names == ["Test.Cached"]
    assert len(eng.sigs.errors) == 1 and "t.hdb:2" in eng.sigs.errors[0]
    tables = list((tmp_path / "cache").glob("db-*/hashes.bin"))
    assert len(tables) == 1 and tables[0].parent.name == f"db-{eng.sigs.digest}"
    again = Engine.load(tmp_path / "bases", cache_dir=tmp_path / "cache")
    assert again.sigs.builder is None and again.sigs.table.mm is not None  # mapped, not rebuilt
    assert again.scan(data).names == ["Test.Cached"] and again.sigs.errors == eng.sigs.errors
    assert again.sigs.count == eng.sigs.count == 2
    (tmp_path / "bases" / "t.hdb").write_text(f"{hashlib.md5(data).hexdigest()}:{len(data)}:Test.Changed\n")
    third = Engine.load(tmp_path / "bases", cache_dir=tmp_path / "cache")
    assert third.scan(data).names == ["Test.Changed"] and not third.sigs.errors
    assert [p.parent.name for p in (tmp_path / "cache").glob("db-*/hashes.bin")] == [f"db-{third.sigs.digest}"]
    assert third.sigs.digest != eng.sigs.digest  # the old entry was pruned, the new one replaces it
