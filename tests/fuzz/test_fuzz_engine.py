"""Fuzz: the engine's parsers — AVE/1 request and reply lines, the signature lines (.hdb/.hsb/.ndb)
and the archive unpackers (runtime/engine).

Properties: each parser raises only its documented error type (BadRequest, AveServerError /
AveServerUnavailable, PatternError — SignatureError, Unsupported —, Corrupted / LimitExceeded /
Protected); a compiled body signature is a valid regex; unpacking stays within the scan's Budget
and member names are printable.
"""

from __future__ import annotations

import io
import re
import tarfile
import zipfile

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runtime.engine import ave1, containers, signatures
from runtime.engine.bodysig import PatternError
from runtime.engine.limits import Budget, Corrupted, LimitExceeded, Limits, Protected
from tests.support.fuzz import mutate, nasty_text

# The zip builder below may repeat a generated member name on purpose; zipfile warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")

_VERBS = st.sampled_from(["PING", "VERSION", "QUIT", "SCANFILE", "SCANDATA", "scandata", "NOPE", ""])
_ARGS = st.lists(st.one_of(st.sampled_from(["-", "c", "ca", "0", "12", "\u00b2", "\u0663", "%ZZ", "%00", "a%20b"]),
                           nasty_text.map(lambda s: s.replace(" ", "").replace("\n", ""))), max_size=4)
ave_line = st.one_of(
    st.tuples(st.sampled_from(["AVE/1", "AVE/2", "ave/1", ""]), _VERBS, _ARGS).map(
        lambda t: " ".join([t[0], t[1], *t[2]])),
    nasty_text,
)


@given(ave_line)
@example("AVE/1 SCANDATA - \u00b2 x")  # found: '²'.isdigit() is True but int('²') raises ValueError
@example("AVE/1 SCANDATA - \u0663 x")
def test_ave1_request_parser(line: str) -> None:
    try:
        req = ave1.parse_request(line)
    except ave1.BadRequest as exc:
        assert "\n" not in str(exc)
        return
    assert req.verb in ("PING", "VERSION", "QUIT", "SCANFILE", "SCANDATA")
    assert req.size >= 0


reply_line = st.one_of(
    st.tuples(st.sampled_from(["AVE/1", "X"]), st.sampled_from(["200", "404", "\u00b2\u00b2", "500", "abc"]),
              st.sampled_from(["RESULT", "PONG", "{}", "[1]", "{\"a\":", "null"]), _ARGS).map(
        lambda t: " ".join([t[0], t[1], t[2], *t[3]])),
    nasty_text,
)


@given(reply_line)
@example("AVE/1 \u00b2 oops")  # found: an error code of unicode digits crashed the client's int()
@example("AVE/1 200 RESULT \u00b2 -")
@example("AVE/1 200 {\"a\":")  # found: a truncated VERSION reply raised JSONDecodeError
@example("AVE/1 200 [1]")
def test_ave1_reply_parsers(line: str) -> None:
    try:
        head = ave1.parse_result(line)
        assert head.doc_len >= 0 and (head.cured_len is None or head.cured_len >= 0)
    except (ave1.AveServerError, ave1.AveServerUnavailable):
        pass
    try:
        doc = ave1.parse_version(line)
        assert isinstance(doc, dict)
    except ave1.AveServerUnavailable:
        pass


_HEX = st.text(alphabet="0123456789abcdefABCDEF?*{}-()|!,[]", max_size=60)
_FIELD = st.one_of(_HEX, st.sampled_from(["*", "0", "EOF-10", "EP+5", "S1+2", "10,20", "1", "6", "7", "-1",
                                          "\u00b2"]), nasty_text.map(lambda s: s.replace(":", "")))
sig_line = st.one_of(st.lists(_FIELD, min_size=1, max_size=7).map(":".join), nasty_text)


@given(sig_line, st.booleans())
@example("d41d8cd98f00b204e9800998ecf8427e:\u00b2:Name", False)
@example("Name:0:*:41{\u00b2}42", False)
@example("Name:0:\u00b2:4142", False)
def test_signature_lines(line: str, sha_only: bool) -> None:
    try:
        signatures.parse_hash_line(line, "fuzz.hdb:1", sha_only)
    except PatternError as exc:  # SignatureError and Unsupported are PatternErrors
        assert str(exc).startswith("fuzz.hdb:1:")
    try:
        sig = signatures.parse_ndb_line(line, "fuzz.ndb:1")
    except PatternError as exc:
        assert str(exc).startswith("fuzz.ndb:1:")
        return
    assert sig is not None


@given(_HEX)
@example("41{5-3}42")
@example("41(42|43)44{\u00b2}")
def test_hexsig_compiles(sig: str) -> None:
    try:
        pattern, _ = signatures.hexsig_to_regex(sig, "fuzz.ndb:1")
    except PatternError:
        return
    re.compile(pattern, re.DOTALL)


# -- archive unpackers ----------------------------------------------------------------------------
_LIMITS = Limits(max_members=50, max_unpacked=1 << 20, max_ratio=200, max_depth=4, max_time=10.0)


def _zip(names: list[str], payload: bytes, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for n in names:
            z.writestr(n or "x", payload)
    return buf.getvalue()


def _tar(names: list[str], payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for n in names:
            info = tarfile.TarInfo(n or "x")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


_names = st.lists(nasty_text.map(lambda s: s.replace("\x00", "")), min_size=1, max_size=4)
_edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6)
# bzip2 and LZMA members go through containers' own bounded decoder, not zipfile's
_methods = st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
archive = st.one_of(
    st.tuples(st.just("zip"), _names, st.binary(max_size=300), _edits, st.integers(0, 40), _methods).map(
        lambda t: (t[0], mutate(_zip(t[1], t[2], t[5]), t[3], t[4]))),
    st.tuples(st.just("tar"), _names, st.binary(max_size=300), _edits, st.integers(0, 40)).map(
        lambda t: (t[0], mutate(_tar(t[1], t[2]), t[3], t[4]))),
    st.tuples(st.sampled_from(["gzip", "bzip2", "xz", "zip", "tar", "uue"]), st.binary(max_size=600)),
    st.tuples(st.just("uue"), st.tuples(nasty_text, st.binary(max_size=200)).map(
        lambda t: b"begin 644 " + t[0].encode("utf-8", "replace").replace(b"\n", b"") + b"\n" + t[1] + b"\nend\n")),
)


def _zip_version_64() -> bytes:
    data = bytearray(_zip(["a"], b""))
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 6] = 64  # "version needed to extract" 6.4 in the central directory
    return bytes(data)


@given(archive)
@example(("zip", _zip_version_64()))  # found: NotImplementedError escaped ZipFile()
@example(("uue", b"begin 644 \x1b[31mred\nM\nend\n"))
@example(("zip", mutate(_zip(["00\x80\x80\x80\x80\U00010000\U00010000", "000000000"], b"\x00\x00\x00\x00\x01"),
                        [(147, 0)], 0)))  # found: a member with an empty name raised IndexError in is_dir()
def test_unpackers(case: tuple[str, bytes]) -> None:
    kind, data = case
    budget = Budget(_LIMITS)
    try:
        for m in containers.members(kind, data, "fuzz", budget):
            assert isinstance(m.name, str)
            assert not re.search(r"[\x00-\x1f\x7f]", m.name), f"unsafe member name {m.name!r}"
            assert len(m.data) <= _LIMITS.max_unpacked
    except (Corrupted, LimitExceeded, Protected):
        pass
    assert containers.identify(data) in (None, "zip", "gzip", "bzip2", "xz", "tar", "uue")
