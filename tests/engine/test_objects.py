"""Statuses (guide 6.2.2, chapter 8), cure, containers and their paths, corrupted archives."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import subprocess
import tarfile
import uuid
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from runtime.engine import mime
from runtime.engine.eicar import EICAR
from runtime.engine.engine import Engine
from runtime.engine.verdict import EXIT_CODES, Status

VARIANTS = [
    (b"", Status.INFECTED, "EICAR-Test-File", Status.CUREFAILED),
    (b"CURE-", Status.INFECTED, "EICAR-Test-File (curable)", Status.CURED),
    (b"DELE-", Status.INFECTED, "EICAR-Test-File (delete)", Status.CURED),
    (b"WARN-", Status.WARNING, "EICAR-Test-File (modified)", Status.WARNING),
    (b"SUSP-", Status.SUSPICIOUS, "EICAR-Test-File (unknown)", Status.SUSPICIOUS),
    (b"CORR-", Status.CORRUPTED, "EICAR-Test-File (corrupted)", Status.CORRUPTED),
    (b"ERRO-", Status.ERROR, "EICAR-Test-File (error)", Status.ERROR),
]


@pytest.mark.parametrize(("prefix", "status", "name", "cured_status"), VARIANTS)
def test_eicar_family(engine: Engine, prefix: bytes, status: Status, name: str, cured_status: Status) -> None:
    data = prefix + EICAR + b"\r\n"
    v = engine.scan(data, "eicar.com")
    assert v.status is status
    assert [(o.path, o.status, o.name) for o in v.objects] == [("eicar.com", status, name)]
    c = engine.scan(data, "eicar.com", cure=True)
    assert c.status is cured_status
    if prefix == b"CURE-":
        assert c.cured == b"CURE\r\n" and not c.deleted
        assert engine.scan(c.cured).status is Status.CLEAN
    elif prefix == b"DELE-":
        assert c.deleted and c.cured is None
    else:
        assert c.cured is None and not c.deleted


def test_exit_codes_table() -> None:
    assert {s.value: c for s, c in EXIT_CODES.items()} == {
        "CLEAN": 0, "SUSPICIOUS": 2, "WARNING": 3, "INFECTED": 4, "CUREFAILED": 4,
        "CURED": 5, "PROTECTED": 6, "ERROR": 7, "CORRUPTED": 8}


def test_eicar_whitespace_rule(engine: Engine) -> None:
    assert engine.scan(EICAR + b" " * 60).status is Status.INFECTED  # 128 bytes in all
    assert engine.scan(EICAR + b" " * 61).status is Status.CLEAN
    assert engine.scan(EICAR + b" trailing text").status is Status.CLEAN
    assert engine.scan(b"XXXX-" + EICAR).status is Status.CLEAN
    assert engine.scan(EICAR[:-1]).status is Status.CLEAN


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for n, d in members.items():
            info = tarfile.TarInfo(n)
            info.size = len(d)
            t.addfile(info, io.BytesIO(d))
    return buf.getvalue()


WRAP = {
    "zip": (lambda d: _zip({"dir/x.exe": d, "readme.txt": b"clean text"}), "a.zip", "a.zip/dir/x.exe"),
    "tar": (lambda d: _tar({"dir/x.exe": d, "b.txt": b"clean"}), "a.tar", "a.tar/dir/x.exe"),
    "gzip": (gzip.compress, "x.exe.gz", "x.exe.gz/x.exe"),
    "bzip2": (bz2.compress, "x.exe.bz2", "x.exe.bz2/x.exe"),
    "xz": (lambda d: lzma.compress(d), "x.exe.xz", "x.exe.xz/x.exe"),
}


@pytest.mark.parametrize("kind", sorted(WRAP))
def test_each_container_kind(engine: Engine, kind: str) -> None:
    wrap, name, path = WRAP[kind]
    v = engine.scan(wrap(EICAR), name)
    assert v.status is Status.INFECTED
    assert [(o.path, o.name) for o in v.objects] == [(path, "EICAR-Test-File")]
    assert engine.scan(wrap(b"nothing to see" * 100), name).status is Status.CLEAN


@pytest.mark.parametrize("order", [("zip", "gzip", "tar"), ("tar", "xz", "zip", "bzip2"),
                                   ("gzip", "bzip2", "xz"), ("bzip2", "zip", "zip", "gzip")])
def test_nested_in_any_order(engine: Engine, order: tuple[str, ...]) -> None:
    data = b"WARN-" + EICAR
    for kind in order:
        data = WRAP[kind][0](data)
    v = engine.scan(data, "outer")
    assert v.status is Status.WARNING
    assert v.objects[0].path.startswith("outer/") and v.objects[0].path.count("/") >= len(order)


def test_worst_status_rolls_up(engine: Engine) -> None:
    z = _zip({"a": b"SUSP-" + EICAR, "b": EICAR, "c": b"CORR-" + EICAR, "d": b"ok"})
    v = engine.scan(z, "mix.zip")
    assert v.status is Status.INFECTED
    assert {(o.path, o.status) for o in v.objects} == {
        ("mix.zip/a", Status.SUSPICIOUS), ("mix.zip/b", Status.INFECTED), ("mix.zip/c", Status.CORRUPTED)}
    assert engine.scan(_zip({"a": b"WARN-" + EICAR, "c": b"CORR-" + EICAR}), "w.zip").status is Status.WARNING


def test_encrypted_zip_member_is_protected(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(EICAR)
    (tmp_path / "plain.txt").write_bytes(b"hello")
    subprocess.run(["zip", "-q", "-P", "pass", "-j", str(tmp_path / "enc.zip"), str(tmp_path / "secret.txt")],
                   check=True)
    subprocess.run(["zip", "-q", "-j", str(tmp_path / "enc.zip"), str(tmp_path / "plain.txt")], check=True)
    v = engine.scan((tmp_path / "enc.zip").read_bytes(), "enc.zip")
    assert v.status is Status.PROTECTED
    assert [(o.path, o.status) for o in v.objects] == [("enc.zip/secret.txt", Status.PROTECTED)]


@pytest.mark.parametrize("kind", sorted(WRAP))
def test_truncated_archive_is_corrupted(engine: Engine, kind: str) -> None:
    wrap, name, _ = WRAP[kind]
    whole = wrap(os.urandom(3000) + b"clean" * 2000)
    v = engine.scan(whole[: len(whole) * 2 // 3], name)
    assert v.status is Status.CORRUPTED, v


def test_corrupted_member_crc(engine: Engine) -> None:
    z = bytearray(_zip({"a.txt": b"A" * 5000}))
    z[z.index(b"a.txt") + 5 + 10] ^= 0xFF  # flip a byte of the deflate stream
    assert engine.scan(bytes(z), "bad.zip").status is Status.CORRUPTED


def _mail(parts: list[tuple[str, bytes, str]], nested: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "test"
    msg.set_content("see attachments")
    for name, data, cte in parts:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name, cte=cte)
    if nested:
        outer = EmailMessage()
        outer["From"], outer["To"], outer["Subject"] = "c@example.com", "d@example.com", "fwd"
        outer.set_content("forwarded")
        outer.add_attachment(msg)
        return outer.as_bytes()
    return msg.as_bytes()


@pytest.mark.parametrize("cte", ["base64", "quoted-printable"])
def test_mime_attachment_encodings(engine: Engine, cte: str) -> None:
    v = engine.scan(_mail([("virus.com", EICAR, cte), ("ok.txt", b"fine", cte)]), "msg")
    assert v.status is Status.INFECTED and [o.path for o in v.objects] == ["msg/virus.com"]


def test_mime_nested_message_rfc822(engine: Engine) -> None:
    v = engine.scan(_mail([("inner.zip", _zip({"e.com": b"SUSP-" + EICAR}), "base64")], nested=True), "msg")
    assert v.status is Status.SUSPICIOUS and v.objects[0].path == "msg/inner.zip/e.com"


def test_uuencoded_block_in_mail_body(engine: Engine) -> None:
    import binascii

    lines = b"".join(binascii.b2a_uu(EICAR[i:i + 45]) for i in range(0, len(EICAR), 45))
    body = b"Hello,\n\nbegin 644 eicar.com\n" + lines + b"`\nend\n\nbye\n"
    raw = b"From: a@example.com\nTo: b@example.com\nSubject: uu\n\n" + body
    v = engine.scan(raw, "msg")
    assert v.status is Status.INFECTED and v.objects[0].path == "msg/part0/eicar.com"


def test_cure_inside_mime_rewrites_the_part(engine: Engine) -> None:
    raw = _mail([("c.com", b"CURE-" + EICAR, "base64"), ("d.com", b"DELE-" + EICAR, "base64"),
                 ("ok.txt", b"unchanged", "base64")])
    v = engine.scan(raw, "msg", cure=True)
    assert v.status is Status.CURED and v.cured is not None
    again = engine.scan(v.cured, "msg")
    assert again.status is Status.CLEAN
    parts = {n: d for n, d, _ in mime.leaves(mime.parse(v.cured))}
    assert parts["c.com"] == b"CURE" and parts["d.com"] == b"" and parts["ok.txt"] == b"unchanged"
    assert engine.scan(raw, "msg").status is Status.INFECTED  # without a cure request nothing changes


def test_cure_inside_archive_fails(engine: Engine) -> None:
    v = engine.scan(_zip({"c.com": b"CURE-" + EICAR}), "a.zip", cure=True)
    assert v.status is Status.CUREFAILED and v.cured is None


def test_member_names_never_reach_the_filesystem(engine: Engine, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    evil = f"/tmp/kav-evil-{uuid.uuid4().hex}"
    data = _tar({"../escape.txt": EICAR, evil: b"x", "a\nb\"c": b"SUSP-" + EICAR})
    v = engine.scan(_zip({"../../zip-escape": data}), "t.zip")
    assert v.status is Status.INFECTED
    assert not os.path.exists(evil) and not list(work.iterdir()) and not (tmp_path / "escape.txt").exists()
    assert all("\n" not in o.path and '"' not in o.path.replace("t.zip", "") for o in v.objects)
