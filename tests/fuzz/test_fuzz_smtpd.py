"""Fuzz: the SMTP/LMTP command parser of smtpscanner (runtime/filter/smtpd.py) over a real socket.

A real KavSMTP/KavLMTP session (aiosmtpd underneath) listens on loopback in a background event
loop; each example opens a connection, writes a generated command stream (the MTA side may be
anything: pipelining, bare LF, NULs, 8-bit, huge lines, DATA with dots) and reads every reply.
Property: every line the filter sends is a valid SMTP reply line (three digits 2xx-5xx, then space
or hyphen), no reply smuggles a CR or LF, and the session never dies without answering a command.

The one stand-in: the message processor behind DATA answers 250 per recipient without scanning;
what is fuzzed here is the command parser, and the scanning path has its own real-part tests.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runtime.filter.smtpd import Features, FilterHandler, session_class
from tests.support.fuzz import SMTP_REPLY, nasty_text, scaled


class _Accepting:
    """Stands in for the Processor: 250 for every recipient (see the module docstring)."""

    async def process(self, env, data, per_recipient=True):  # noqa: ANN001, ANN201
        return {r.address: "250 2.0.0 Ok: fuzz" for r in env.recipients}


def _serve(lmtp: bool) -> tuple[asyncio.AbstractEventLoop, int]:
    loop = asyncio.new_event_loop()
    features = Features(lmtp=lmtp, size=4096, eightbit=True, dsn=True, xforward=["NAME", "ADDR", "PROTO", "HELO"],
                        smtputf8=True)
    handler = FilterHandler(_Accepting(), lmtp)
    started = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(
            lambda: session_class(features)(handler, features, hostname="fuzz.example", timeout=5),
            "127.0.0.1", 0))
        port.append(server.sockets[0].getsockname()[1])
        started.set()
        loop.run_forever()
        server.close()

    threading.Thread(target=run, daemon=True).start()
    started.wait(10)
    return loop, port[0]


@pytest.fixture(scope="module", params=[False, True], ids=["smtp", "lmtp"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[int, bool]]:
    loop, port = _serve(request.param)
    yield port, request.param
    loop.call_soon_threadsafe(loop.stop)


_VERB = st.sampled_from(["EHLO", "HELO", "LHLO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "QUIT", "VRFY",
                         "XFORWARD", "HELP", "BDAT", "AUTH", "STARTTLS", "mail from:", "rcpt to:", "", "EXPN"])
_ARG = st.one_of(st.sampled_from(["<>", "<a@b>", "<a@b> SIZE=10", "<a@b> SIZE=99999", "<a@b> BODY=8BITMIME",
                                  "<a@b> BODY=BINARYMIME", "<a@b> SMTPUTF8", "<a@b> RET=HDRS ENVID=x+2B",
                                  "<a@b> NOTIFY=SUCCESS ORCPT=rfc822;a@b", "<@r:a@b>", "<a@b@c>", "a@b",
                                  "<\u00e9@b>", "NAME=x ADDR=1.2.3.4", "NAME", "BOGUS=1", "<a@b> SIZE=\u00b2",
                                  "<a@b> FOO", " ", "host.example"]),
                 nasty_text.map(lambda s: s.replace("\n", " ")))
_cmd = st.tuples(_VERB, _ARG).map(lambda t: f"{t[0]} {t[1]}".strip() if t[0] and not t[0].endswith(":")
                                  else f"{t[0]}{t[1]}")
_body = st.one_of(st.sampled_from(["Subject: x\r\n\r\nhi\r\n", ".\r\n", "..dot\r\n", "a\nb\rc\r\n", "\r\n.x\r\n"]),
                  nasty_text)
_line_end = st.sampled_from(["\r\n", "\n", "\r\n", "\r\n"])


@st.composite
def session(draw: st.DrawFn) -> bytes:
    out = []
    if draw(st.booleans()):
        out.append(draw(st.sampled_from(["EHLO x", "LHLO x", "HELO x"])) + "\r\n")
    for _ in range(draw(st.integers(0, 8))):
        cmd = draw(_cmd)
        out.append(cmd + draw(_line_end))
        if cmd.upper() == "DATA":
            out.append(draw(_body) + "\r\n.\r\n")
    out.append("QUIT\r\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@scaled(0.5)
@given(data=session())
# Found by this target: aiosmtpd echoed unknown commands verbatim, control characters and all.
@example(data=b"EHLO x\r\nDATA\r\na\nb\rc\r\n\r\n.\r\nQUIT\r\n")
@example(data=b"\x1f\r\nQUIT\r\n")
@example(data=b"EHLO x\r\nMAIL FROM:<a@b> SIZE=\xc2\xb2\r\nQUIT\r\n")
@example(data=b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + b"x" * 5000 + b"\r\n.\r\nQUIT\r\n")
@example(data=b"EHLO x\r\nXFORWARD NAME=a\rb\r\nQUIT\r\n")
@example(data=b"\x00\xff\r\n" + b"A" * 70000 + b"\r\nQUIT\r\n")
def test_every_reply_is_an_smtp_reply(server: tuple[int, bool], data: bytes) -> None:
    port, lmtp = server
    raw = _exchange(port, data)
    assert raw.endswith(b"\r\n"), raw[-200:]
    lines = raw[:-2].split(b"\r\n")
    assert lines[0].startswith(b"220 "), lines[0]
    for line in lines:
        assert b"\r" not in line and b"\n" not in line, line
        assert SMTP_REPLY.match(line), line
