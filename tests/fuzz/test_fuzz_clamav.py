"""Fuzz: the ClamAV database formats — the CVD/CLD container reader (runtime/engine/cvd.py) and the
logical (.ldb) and body-pattern parsers (runtime/engine/ldb.py, bodysig.py).

Properties: a damaged, truncated or hostile container raises only ContainerError naming the file
(never a tarfile/gzip/struct error, never a member outside plain file names, never unbounded
work); a signature line raises only PatternError (Unsupported for valid but unimplemented) naming
``file:line``.  The signed containers are made with a throw-away key (tests/support/clamav.py).
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runtime.engine import bodysig, cvd, ldb
from runtime.engine.bodysig import PatternError
from runtime.engine.dsig import PublicKey
from tests.support.clamav import build_cvd, make_test_key
from tests.support.fuzz import mutate, nasty_text


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, object]:
    tmp = tmp_path_factory.mktemp("cvd")
    key = make_test_key()
    members = {"test.ndb": b"Fuzz.Body:0:*:6b617634{2-4}74657374\n",
               "test.hdb": b"44d88612fea8a8f36de82e1278abb02f:68:E\n"}
    signed = build_cvd(tmp / "x.cvd", members, key).read_bytes()
    plain = build_cvd(tmp / "x.cld", members, key).read_bytes()
    return signed, plain, key


def _evil_tar(name: str, kind: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo(name or "x")
        info.type = kind
        info.linkname = "/etc/passwd"
        info.size = 0 if kind != tarfile.REGTYPE else 3
        t.addfile(info, io.BytesIO(b"abc") if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


_edits = st.lists(st.tuples(st.integers(0, 1 << 14), st.integers(0, 255)), max_size=6)


@given(st.sampled_from(["cvd", "cld"]), _edits, st.integers(0, 600), st.booleans(),
       st.one_of(st.none(), st.tuples(nasty_text, st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                                                                   tarfile.DIRTYPE, tarfile.CHRTYPE]))))
@example("cld", [], 0, False, ("../../etc/x", tarfile.REGTYPE))
@example("cvd", [(40, 0xB2)], 0, False, None)
def test_container_reader(good, tmp_path_factory: pytest.TempPathFactory, suffix: str,  # noqa: ANN001
                          edits: list[tuple[int, int]], cut: int, verify: bool,
                          evil: tuple[str, bytes] | None) -> None:
    signed, plain, key = good
    data = signed if suffix == "cvd" else plain
    if evil is not None:
        data = data[: cvd.HEADER_LEN] + _evil_tar(*evil)
    data = mutate(data, edits, cut)
    path = Path(tmp_path_factory.getbasetemp()) / f"fuzz.{suffix}"
    path.write_bytes(data)
    try:
        got = cvd.read_container(path, key=PublicKey(key.n, key.e, "test key"), verify_cld=verify)
    except cvd.ContainerError as exc:
        assert str(exc).startswith(str(path)), str(exc)
        return
    for name, _ in got.members:
        assert "/" not in name and ".." not in name and name.isprintable(), name


_LDB_FIELD = st.one_of(
    st.sampled_from(["Engine:51-255", "Target:1", "Target:\u00b2", "FileSize:10-20", "EntryPoint:1-2", "0&1", "0|1",
                     "(0&1)>2", "0=1", "0>1,2", "0<\u00b2", "(0|", "41424344", "0:41424344", "EOF-4:4142",
                     "41{2-4}42", "(41|42)", "4142::i", "4142::w", "/ab+c/", "0/ab(/", "41??42", "*", ""]),
    nasty_text.map(lambda s: s.replace(";", "")))
ldb_line = st.one_of(
    st.tuples(st.sampled_from(["Fuzz.Ldb", "", "x"]), st.lists(_LDB_FIELD, min_size=1, max_size=6)).map(
        lambda t: ";".join([t[0], *t[1]])),
    nasty_text)


@given(ldb_line)
@example("Fuzz;Target:0;0;41424344")
@example("Fuzz;Engine:\u00b2-255;0;41424344")
@example("Fuzz;Target:0,FileSize:\u00b2-3;0;41424344")
@example("Fuzz;Target:0;0>\u00b2;41424344")
@example("Fuzz;Target:0;0;Engine")  # the error names the subsignature too: "fuzz.ldb:1 subsig 0: ..."
def test_ldb_lines(line: str) -> None:
    try:
        sig = ldb.parse_ldb_line(line, "fuzz.ldb:1")
    except PatternError as exc:
        assert re.match(r"fuzz\.ldb:1( subsig \d+)?: ", str(exc)), str(exc)
        return
    assert sig is not None


@given(st.text(alphabet="0123456789abcdefABCDEF?*{}-()|!,[]~:/\u00b2", max_size=60), st.booleans(), st.booleans())
@example("41{\u00b2}42", False, False)
@example("41[\u00b2-3]42", False, False)
def test_body_patterns(sig: str, nocase: bool, wide: bool) -> None:
    try:
        bodysig.check(sig, "fuzz.ndb:1", nocase=nocase, wide=wide)
        pat = bodysig.parse(sig, "fuzz.ndb:1", nocase=nocase, wide=wide)
    except PatternError as exc:
        assert str(exc).startswith("fuzz.ndb:1:"), str(exc)
        return
    assert pat is not None
