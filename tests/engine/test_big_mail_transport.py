"""Big mail without copies (issue 20 item 3): the MIME leaves found without the parse tree are the
standard library's, and aveserver scans a file handed over as a descriptor (AVE/1 SCANFD)."""

from __future__ import annotations

import asyncio
import base64
import os
import quopri
import random
import socket

from runtime.engine import mime
from runtime.engine.client import AveClient
from runtime.filter.avescan import AsyncAveClient

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def stdlib_leaves(data: bytes) -> list[tuple[str, bytes]]:
    return [(name, payload) for name, payload, _ in mime.leaves(mime.parse(data))]


def random_entity(rnd: random.Random, depth: int = 0) -> bytes:
    if depth < 3 and rnd.random() < 0.35:
        b = f"b{rnd.randint(0, 3) if rnd.random() < 0.2 else rnd.getrandbits(40)}".encode()
        out = b'Content-Type: multipart/mixed; boundary="' + b + b'"\n\n' + rnd.choice([b"", b"preamble\n"])
        for _ in range(rnd.randint(0, 3)):
            out += b"--" + b + rnd.choice([b"", b"  ", b"--"] if rnd.random() < 0.1 else [b""]) + b"\n"
            out += random_entity(rnd, depth + 1) + b"\n"
        if rnd.random() < 0.8:
            out += b"--" + b + b"--\n" + rnd.choice([b"", b"epilogue\n"])
        return out
    body = rnd.randbytes(rnd.randint(0, 300))
    cte = rnd.choice([b"base64", b"quoted-printable", b"7bit", b"", b"BASE64", b"base64 "])
    if cte.strip().lower() == b"base64":
        enc = base64.encodebytes(body)
        if rnd.random() < 0.2:
            enc = enc[:-2] + b"\n"  # broken padding
        if rnd.random() < 0.1:
            enc = enc.replace(b"A", b"!")  # characters outside the alphabet
    elif cte == b"quoted-printable":
        enc = quopri.encodestring(body) + rnd.choice([b"", b"=\n", b"=4"])
    else:
        enc = bytes(rnd.choice(b"abc .-\n=") for _ in range(rnd.randint(0, 80)))
    ctype = rnd.choice([b"text/plain", b"application/octet-stream"] + [b"message/rfc822"] * (rnd.random() < 0.1))
    head = b"Content-Type: " + ctype + b"\n"
    if rnd.random() < 0.15:  # odd header lines: folded, envelope-like, misplaced
        head = rnd.choice([b" folded first\n", b"From someone\n", b"X-A: 1\n  more\n", b"X:\n"]) + head
    if rnd.random() < 0.05:
        head += b"From at the end\n"
    if rnd.random() < 0.5:
        head += b'Content-Disposition: attachment; filename="f' + str(rnd.randint(0, 9)).encode() + b'.bin"\n'
    if cte:
        head += b"Content-Transfer-Encoding: " + cte + b"\n"
    return head + rnd.choice([b"\n", b"", b"X\n"]) + enc


def test_leaves_without_the_tree_are_the_standard_librarys() -> None:
    rnd = random.Random(20)
    fast = 0
    for _ in range(2500):
        data = b"From: a@example.com\nSubject: x\nMIME-Version: 1.0\n" + random_entity(rnd)
        if rnd.random() < 0.3:
            data = data.replace(b"\n", b"\r\n")
        got = mime.leaves_of(data)
        if got is not None:
            fast += 1
            assert list(got) == stdlib_leaves(data), data[:400]
    assert fast > 1100  # most shapes take the direct path; the others are left to the feed parser


def test_special_structures_are_left_to_the_feed_parser() -> None:
    head = b"From: a@example.com\nMIME-Version: 1.0\n"
    cases = {
        "rfc822": head + b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: message/rfc822\n\n'
                         b"Subject: inner\n\nhi\n--b--\n",
        "digest": head + b'Content-Type: multipart/digest; boundary="b"\n\n--b\n\nSubject: x\n\nhi\n--b--\n',
        "no boundary": head + b"Content-Type: multipart/mixed\n\nbody\n",
        "boundary absent": head + b'Content-Type: multipart/mixed; boundary="b"\n\nno parts here\n',
        "bare CR": head + b"Content-Type: text/plain\n\nline\rmore\n",
        "uuencode": head + b"Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 a\n`\nend\n",
        "non-ASCII boundary": head + b"Content-Type: multipart/mixed; boundary*=utf-8''%C3%A9\n\n--\xc3\xa9\n"
                                     b"\nx\n--\xc3\xa9--\n",
        "padding": head + b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nQUJD\nRA\n",
        "reused boundary": head + b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: '
                                  b'multipart/mixed; boundary="b"\n\n--b\n\nx\n--b--\n--b--\n',
    }
    for what, data in cases.items():
        assert mime.leaves_of(data) is None, what
        stdlib_leaves(data)  # and the feed parser takes them


def test_big_attachment_found_by_name_and_content(engine) -> None:  # noqa: ANN001
    attachment = random.Random(1).randbytes(3_000_000) + EICAR
    data = (b"From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n"
            b"--b1\nContent-Type: text/plain\n\nhello\n--b1\nContent-Type: application/octet-stream\n"
            b"Content-Disposition: attachment; filename=\"big.bin\"\nContent-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(EICAR) + b"\n--b1\nContent-Type: application/octet-stream\n"
            b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(attachment[:3_000_000]) + b"--b1--\n")
    assert mime.leaves_of(data) is not None
    v = engine.scan(data, "msg")
    assert v.status.name == "INFECTED"
    assert [o.path for o in v.objects if o.name] == ["msg/big.bin"]


def test_scanfd_hands_aveserver_a_descriptor(server, tmp_path) -> None:  # noqa: ANN001
    server.start()
    clean, dirty = tmp_path / "clean.txt", tmp_path / "dirty.txt"
    clean.write_bytes(b"nothing here\n" * 1000)
    dirty.write_bytes(b"x" * 100 + b"kav4test12sign" + b"y")
    os.chmod(dirty, 0)  # aveserver never opens the path: it reads the descriptor it was given

    async def scan(path: str) -> object:
        client = AsyncAveClient(str(server.sock))
        fd = os.open(path, os.O_RDONLY)
        try:
            os.lseek(fd, 0, os.SEEK_END)  # a spool descriptor sits at its end: read from offset 0
            return await client.scan_fd(fd, "message")
        finally:
            os.close(fd)
            await client.close()

    assert asyncio.run(scan(str(clean))).status.name == "CLEAN"
    v = asyncio.run(scan(str(dirty)))
    assert v.status.name == "INFECTED" and v.names == ["Test.Body.Sig"]


def test_scanfd_without_a_descriptor_or_of_a_non_file(server, tmp_path) -> None:  # noqa: ANN001
    server.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(server.sock))
        s.sendall(b"AVE/1 SCANFD - message\n")
        assert s.recv(4096).startswith(b"AVE/1 400 SCANFD: no file descriptor")
        r, w = os.pipe()
        try:
            socket.send_fds(s, [b"AVE/1 SCANFD - message\n"], [r])
            assert s.recv(4096).startswith(b"AVE/1 404 SCANFD: Not a regular file")
        finally:
            os.close(r)
            os.close(w)
    with AveClient(server.sock) as c:  # the server is still serving
        assert c.ping()
