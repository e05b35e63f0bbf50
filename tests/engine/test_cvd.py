"""CVD/CLD containers and their digital signature (issue 12, item 1)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile

import pytest

from runtime.engine import dsig
from runtime.engine.cvd import ContainerError, read_container
from tests.support.clamav import build_cvd, make_test_key

MEMBERS = {"main.info": b"ClamAV-VDB:x\n", "main.hdb": b"44d88612fea8a8f36de82e1278abb02f:68:Test.Sig\n"}


def test_dsig_round_trip_and_wrong_key() -> None:
    key = make_test_key()
    md5 = "44d88612fea8a8f36de82e1278abb02f"
    sig = dsig.sign(md5, key.n, key.d)
    assert set(sig) <= set(dsig.ALPHABET)
    dsig.verify(md5, sig, key.public)
    with pytest.raises(dsig.SignatureInvalid):
        dsig.verify("0" * 32, sig, key.public)
    with pytest.raises(dsig.SignatureInvalid):  # ClamAV's key does not verify our test signature
        dsig.verify(md5, sig)
    with pytest.raises(dsig.SignatureInvalid, match="alphabet"):
        dsig.verify(md5, sig[:-1] + "!", key.public)


def test_cvd_verified_and_unpacked(tmp_path) -> None:
    path = build_cvd(tmp_path / "main.cvd", MEMBERS)
    c = read_container(path, make_test_key().public)
    assert c.signed and c.header.version == 1 and c.header.builder == "kavtest"
    assert dict(c.members) == MEMBERS


def test_tampered_byte_refused(tmp_path) -> None:
    path = build_cvd(tmp_path / "main.cvd", MEMBERS)
    raw = bytearray(path.read_bytes())
    raw[600] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ContainerError, match=r"main\.cvd: MD5 of the content"):
        read_container(path, make_test_key().public)


def test_header_md5_rewritten_still_refused(tmp_path) -> None:
    """An attacker who fixes the MD5 after changing the payload cannot forge the dsig."""
    path = build_cvd(tmp_path / "main.cvd", MEMBERS)
    other = build_cvd(tmp_path / "x.cvd", {"main.hdb": b"00000000000000000000000000000000:1:Evil\n"})
    head = bytearray(path.read_bytes()[:512])
    new_md5 = other.read_bytes()[:512].split(b":")[5]
    fields = bytes(head).split(b":")
    fields[5] = new_md5
    forged = b":".join(fields)
    path.write_bytes(forged + other.read_bytes()[512:])
    with pytest.raises(ContainerError, match="digital signature does not match"):
        read_container(path, make_test_key().public)


def test_cld_loads_unsigned_like_clamd(tmp_path) -> None:
    path = build_cvd(tmp_path / "daily.cld", MEMBERS)
    c = read_container(path, make_test_key().public)
    assert not c.signed and dict(c.members) == MEMBERS
    c = read_container(path, make_test_key().public, verify_cld=True)
    assert c.signed


@pytest.mark.parametrize("kind", ["dotdot", "dir", "symlink", "hardlink"])
def test_hostile_tar_members_refused(tmp_path, kind) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo({"dotdot": "../main.hdb", "dir": "sub/main.hdb"}.get(kind, "main.hdb"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "/etc/shadow"
        else:
            info.size = 3
        tar.addfile(info, io.BytesIO(b"abc") if info.isreg() else None)
    path = tmp_path / "bad.cld"
    from runtime.engine.cvd import build_header
    path.write_bytes(build_header("t", 1, 1, 90, "0" * 32, "a", "x", 0) + buf.getvalue())
    with pytest.raises(ContainerError, match="bad.cld: member"):
        read_container(path, make_test_key().public)


def test_not_a_container(tmp_path) -> None:
    path = tmp_path / "main.cvd"
    path.write_bytes(b"hello" * 200)
    with pytest.raises(ContainerError, match="main.cvd: not a ClamAV database container"):
        read_container(path)


def test_public_key_file(tmp_path) -> None:
    key = make_test_key()
    loaded = dsig.load_key(key.write_public(tmp_path / "key.txt"))
    assert (loaded.n, loaded.e) == (key.n, key.e)
    assert dsig.load_key("") is dsig.CLAMAV_KEY
    (tmp_path / "bad.txt").write_text("12 x\n")
    with pytest.raises(ValueError, match="bad.txt:1: BasesPublicKey"):
        dsig.load_key(tmp_path / "bad.txt")


@pytest.mark.skipif(shutil.which("sigtool") is None, reason="Debian's clamav (sigtool) not installed")
def test_sigtool_reads_our_header_and_refuses_our_key(tmp_path) -> None:
    """ClamAV's own tool parses the header we write, and refuses our test signature exactly as we
    refuse a signature from a foreign key (the decoded value is wider than an MD5)."""
    path = build_cvd(tmp_path / "main.cvd", MEMBERS)
    out = subprocess.run(["sigtool", "--info", str(path)], capture_output=True, text=True, timeout=60)
    assert "Version: 1" in out.stdout and "Builder: kavtest" in out.stdout, out.stdout + out.stderr
    assert "signature too large" in out.stderr and out.returncode != 0
    with pytest.raises(dsig.SignatureInvalid, match="digital signature does not match"):
        read_header_dsig = path.read_bytes()[:512].split(b":")
        dsig.verify(read_header_dsig[5].decode(), read_header_dsig[6].decode())
