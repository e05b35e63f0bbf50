"""Big zip members streamed through the matchers (runtime/engine/streamscan.py, issue 20 item 3).

Streaming may only clear a member, never change a verdict: every scan here runs twice, members
streamed (the default, above ``Limits.stream_member_min``) and unpacked whole (streaming off), and
the verdicts must be identical, with the signatures placed across the 1 MiB chunk borders.
"""

from __future__ import annotations

import hashlib
import io
import random
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from runtime.engine import matcher
from runtime.engine.containers import CHUNK
from runtime.engine.engine import Engine
from runtime.engine.limits import Limits
from runtime.engine.targets import AsciiStream, ascii_normalise
from runtime.engine.verdict import Status, Verdict

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
ANY = bytes.fromhex("5a17c0ffee5a17c0ffee0123456789ab")
OFFSET = bytes.fromhex("0ff5e70ff5e70ff5e7")
TAIL = bytes.fromhex("e0fe0fe0fe0fe0f1")
GAP_A, GAP_B = bytes.fromhex("9a9a9a9a01"), bytes.fromhex("9b9b9b9b02")
LDB_A, LDB_B = bytes.fromhex("1dba1dba1dba"), bytes.fromhex("2dbb2dbb2dbb")
PHRASE = b"stream phrase of evil"
HASHED = random.Random(99).randbytes(CHUNK + 4321)

NDB = "\n".join([
    f"Stream.Any:0:*:{ANY.hex()}",
    f"Stream.Offset:0:{CHUNK - 4},8:{OFFSET.hex()}",  # starts in [CHUNK-4, CHUNK+4]: across the border
    f"Stream.Eof:0:EOF-{len(TAIL) + 3}:{TAIL.hex()}",
    f"Stream.Gap:0:*:{GAP_A.hex()}*{GAP_B.hex()}",
    f"Stream.Eicar:0:*:{EICAR.hex()}",
    f"Stream.Text:7:*:{PHRASE.hex()}",
]) + "\n"
LDB = f"Stream.Ldb;Engine:51-255,Target:0;0&1;{LDB_A.hex()};{LDB_B.hex()}\n"
HDB = f"{hashlib.md5(HASHED).hexdigest()}:{len(HASHED)}:Stream.Hash\n"
WHOLE = Limits(stream_member_min=1 << 40)


def _engines(tmp: Path, extra_ndb: str = "") -> tuple[Engine, Engine]:
    db = tmp / "bases"
    db.mkdir(exist_ok=True)
    (db / "s.ndb").write_text(NDB + extra_ndb)
    (db / "s.ldb").write_text(LDB)
    (db / "s.hdb").write_text(HDB)
    return Engine.load(db, Limits(), cache_dir=tmp / "cache"), Engine.load(db, WHOLE, cache_dir=tmp / "cache")


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_BZIP2) -> bytes:
    """bzip2 by default: deflate stores random data as it is, so a signature in a member would also
    be found in the archive's own bytes and hide what the member scan did."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _key(v: Verdict) -> tuple[Status, list[tuple[str, Status, str]]]:
    return v.status, sorted((o.path, o.status, o.name) for o in v.objects)


def _member(rnd: random.Random, text: bool) -> bytes:
    size = rnd.randint(CHUNK + 1000, 3 * CHUNK)
    if text:
        words = [b"alpha", b"beta", b"gamma", b"delta", b"\n", b"  \t "]
        body = bytearray()
        while len(body) < size:
            body += rnd.choice(words) + b" "
        data = bytearray(body[:size])
    else:
        data = bytearray(rnd.randbytes(size))
    # one or two signatures, each across a chunk border or right beside one
    for _ in range(rnd.randint(0, 2)):
        kind = rnd.choice(["any", "offset", "eof", "gap", "eicar", "ldb", "text"])
        border = CHUNK * rnd.randint(1, len(data) // CHUNK)
        at = max(0, border - rnd.randint(0, 24))
        if kind == "any":
            data[at : at + len(ANY)] = ANY
        elif kind == "offset":
            at = CHUNK - 4 + rnd.randint(-2, 10)  # sometimes outside the allowed window
            data[at : at + len(OFFSET)] = OFFSET
        elif kind == "eof":
            end = len(data) - rnd.choice([2, 3, 3, 4])  # the signature wants it 3 bytes before EOF
            data[end - len(TAIL) : end] = TAIL
        elif kind == "gap":
            data[at : at + len(GAP_A)] = GAP_A
            far = min(len(data) - len(GAP_B), at + rnd.randint(10, CHUNK))
            data[far : far + len(GAP_B)] = GAP_B
        elif kind == "eicar":
            data[at : at + len(EICAR)] = EICAR
        elif kind == "ldb":
            data[at : at + len(LDB_A)] = LDB_A
            if rnd.random() < 0.7:
                far = rnd.randint(0, len(data) - len(LDB_B))
                data[far : far + len(LDB_B)] = LDB_B
        else:  # the phrase with its spaces turned into whitespace runs, cut by the border
            spaced = PHRASE.upper().replace(b" ", b" \r\n\t  ")
            data[at : at + len(spaced)] = spaced
    return bytes(data)


@pytest.mark.parametrize("prefilter", ["default", "aho-corasick"])
def test_streamed_and_whole_members_give_identical_verdicts(tmp_path: Path, prefilter: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if prefilter == "aho-corasick":  # the .deb's fallback where libhs.so.5 is absent
        if matcher.ahocorasick is None:
            pytest.skip("pyahocorasick is not installed")
        monkeypatch.setattr(matcher, "hyperscan", None)
    streamed, whole = _engines(tmp_path)
    assert matcher.prefilter_name() == "aho-corasick" or prefilter == "default"
    rnd = random.Random(2020)
    found = set()
    for round_ in range(16):
        members = {f"m{k}.bin": _member(rnd, text=rnd.random() < 0.4) for k in range(rnd.randint(1, 2))}
        if rnd.random() < 0.2:
            members["hashed.bin"] = HASHED
        if rnd.random() < 0.15:
            members["small.com"] = EICAR
        data = _zip(members, rnd.choice([zipfile.ZIP_BZIP2] * 3 + [zipfile.ZIP_LZMA]))
        a, b = streamed.scan(data, f"r{round_}.zip"), whole.scan(data, f"r{round_}.zip")
        assert _key(a) == _key(b), round_
        found.update(o.name for o in a.objects if "/" in o.path)  # found in a member, not in the archive
    # the rounds did exercise every kind of signature, across borders
    assert found == {"Stream.Any", "Stream.Offset", "Stream.Eof", "Stream.Gap", "Stream.Eicar", "Stream.Ldb",
                     "Stream.Text", "Stream.Hash", "EICAR-Test-File"}, found


@pytest.mark.parametrize("shift", [-len(ANY), -len(ANY) + 1, -1, 0, 1])
def test_a_signature_cut_by_the_chunk_border_is_found(tmp_path: Path, shift: int) -> None:
    streamed, whole = _engines(tmp_path)
    data = bytearray(random.Random(shift).randbytes(2 * CHUNK + 77))
    data[CHUNK + shift : CHUNK + shift + len(ANY)] = ANY
    zipped = _zip({"big.bin": bytes(data)})
    v = streamed.scan(zipped, "a.zip")
    assert v.status is Status.INFECTED and [(o.path, o.name) for o in v.objects] == [("a.zip/big.bin", "Stream.Any")]
    assert _key(v) == _key(whole.scan(zipped, "a.zip"))


def test_offsets_hashes_nested_and_corrupt_members_match_the_whole_scan(tmp_path: Path) -> None:
    streamed, whole = _engines(tmp_path)
    rnd = random.Random(7)
    big = rnd.randbytes(CHUNK + 500)
    off_in = bytearray(big)
    off_in[CHUNK : CHUNK + len(OFFSET)] = OFFSET
    off_out = bytearray(big)
    off_out[CHUNK + 40 : CHUNK + 40 + len(OFFSET)] = OFFSET  # beyond the signature's window
    nested = _zip({"eicar.com": EICAR, "pad.bin": rnd.randbytes(CHUNK)})  # a big member that is a zip
    cases = {
        "off-in": _zip({"a.bin": bytes(off_in)}),
        "off-out": _zip({"a.bin": bytes(off_out)}),
        "hash": _zip({"h.bin": HASHED}),
        "hash-other-size": _zip({"h.bin": HASHED + b"x"}),
        "nested": _zip({"inner.zip": nested}),
        "mail": _zip({"m.eml": b"From: a@b\nTo: c@d\nSubject: s\n\n" + rnd.randbytes(CHUNK).hex().encode() + EICAR}),
        "clean": _zip({"c.bin": big}),
    }
    expect = {"off-in": "Stream.Offset", "off-out": None, "hash": "Stream.Hash", "hash-other-size": None,
              "nested": "EICAR-Test-File", "mail": "Stream.Eicar", "clean": None}
    for what, data in cases.items():
        a, b = streamed.scan(data, what), whole.scan(data, what)
        assert _key(a) == _key(b), what
        names = [o.name for o in a.objects if "/" in o.path]
        assert (names == [] if expect[what] is None else expect[what] in names), (what, names)
    # a member whose data fails its CRC: CORRUPTED either way, never cleared by the stream
    bad = bytearray(_zip({"c.bin": big}, zipfile.ZIP_STORED))
    bad[100] ^= 0xFF
    a, b = streamed.scan(bytes(bad), "bad.zip"), whole.scan(bytes(bad), "bad.zip")
    assert a.status is Status.CORRUPTED and _key(a) == _key(b)


def test_limits_fire_the_same_for_streamed_members(tmp_path: Path) -> None:
    db = tmp_path / "bases"
    db.mkdir()
    (db / "s.ndb").write_text(NDB)
    bomb = _zip({"zeros.bin": bytes(8 * CHUNK)})  # ratio ~1000 once past 1 MiB
    for limits in (Limits(max_ratio=50), Limits(max_unpacked=3 * CHUNK)):
        streamed = Engine.load(db, limits, cache_dir=tmp_path / "cache")
        whole = Engine.load(db, Limits(**{**limits.__dict__, "stream_member_min": 1 << 40}), cache_dir=tmp_path / "c2")
        a, b = streamed.scan(bomb, "bomb.zip"), whole.scan(bomb, "bomb.zip")
        assert a.status is Status.ERROR and _key(a) == _key(b), a.objects


def test_a_short_anchor_makes_members_read_whole_with_the_same_verdict(tmp_path: Path) -> None:
    streamed, whole = _engines(tmp_path, "Stream.Short:0:*:c0ffee\n")
    data = bytearray(random.Random(3).randbytes(2 * CHUNK))
    data[CHUNK - 1 : CHUNK + 2] = b"\xc0\xff\xee"
    zipped = _zip({"s.bin": bytes(data)})
    a = streamed.scan(zipped, "s.zip")
    assert "Stream.Short" in [o.name for o in a.objects] and _key(a) == _key(whole.scan(zipped, "s.zip"))


def test_a_clean_big_member_is_never_held_whole(tmp_path: Path) -> None:
    streamed, _whole = _engines(tmp_path)  # with HTML/ASCII signatures: the text is normalised too
    rnd = random.Random(5)
    words = [bytes(rnd.choices(b"abcdefghijklmnopqrstuvwxyz", k=rnd.randint(2, 9))) for _ in range(3000)]
    block = b"".join(w + rnd.choice([b" ", b" ", b"\n", b"  \t"]) for w in rnd.choices(words, k=80_000))
    member = block * (32_000_000 // len(block))
    # deflate: zipfile bounds what one read decompresses (its bzip2 and lzma readers do not)
    zipped = _zip({"big.txt": member}, zipfile.ZIP_DEFLATED)
    tracemalloc.start()
    try:
        v = streamed.scan(zipped, "big.zip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert v.status is Status.CLEAN
    assert peak < len(member) // 3, (peak, len(member))  # chunks and windows, not the 32 MB member


def test_ascii_stream_equals_the_whole_normalisation() -> None:
    rnd = random.Random(11)
    alphabet = [b"A", b"b", b" ", b"\t", b"\r\n", b"\x0b", b"\x0c", b"  ", b"Z9"]
    for _ in range(300):
        data = b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        cuts = sorted(rnd.randint(0, len(data)) for _ in range(rnd.randint(0, 5)))
        pieces = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        s = AsciiStream()
        assert b"".join(s.feed(p) for p in pieces) == ascii_normalise(data), (data, cuts)
