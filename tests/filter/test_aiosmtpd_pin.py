"""smtpscanner against the aiosmtpd it is pinned to (pyproject.toml): the hooks it uses, the one
constructor override, and the asyncio internals smtpd.py reads.  In-process, real sockets."""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
import tomllib
from importlib.metadata import version
from pathlib import Path

import aiosmtpd.smtp

from runtime.filter.smtpd import Features, FilterHandler, KavSMTP, session_class

REPO = Path(__file__).resolve().parents[2]


def _pin() -> tuple[tuple[int, ...], tuple[int, ...]]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("aiosmtpd"))
    low = re.search(r">=([\d.]+)", spec)
    high = re.search(r"<([\d.]+)", spec)
    assert low and high, f"aiosmtpd must be pinned to a tested range, got {spec!r}"
    return tuple(map(int, low.group(1).split("."))), tuple(map(int, high.group(1).split(".")))


def test_installed_aiosmtpd_is_in_the_pinned_range() -> None:
    low, high = _pin()
    have = tuple(int(x) for x in re.findall(r"\d+", version("aiosmtpd"))[:3])
    assert low <= have < high
    assert low <= (1, 4, 3), "Debian bookworm ships python3-aiosmtpd 1.4.3: the range must include it"


def test_stream_reader_keeps_its_input_in_a_bytearray() -> None:
    async def probe() -> object:
        reader = asyncio.StreamReader()
        reader.feed_data(b"NOOP\r\n")
        return reader._buffer  # noqa: SLF001 - what KavSMTP.push and _read_data rely on

    assert isinstance(asyncio.run(probe()), bytearray)


async def _talk(features: Features, lines: list[bytes]) -> list[str]:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    proto = session_class(features)(FilterHandler(None, features.lmtp), features, hostname="filter.test")
    await loop.connect_accepted_socket(lambda: proto, ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    replies = [(await reader.readline()).decode().rstrip()]
    for line in lines:
        writer.write(line + b"\r\n")
        await writer.drain()
        while True:
            reply = (await reader.readline()).decode().rstrip()
            replies.append(reply)
            if reply[3:4] != "-":
                break
    writer.close()
    await proto.closed
    return replies


FEATURES = dict(size=1000, eightbit=True, dsn=True, xforward=["NAME", "ADDR"], smtputf8=False)


def test_ehlo_offers_exactly_the_configured_extensions_and_restores_inspect() -> None:
    replies = asyncio.run(_talk(Features(lmtp=False, **FEATURES), [b"EHLO mta.test", b"LHLO mta.test"]))
    assert replies[0].startswith("220 filter.test")
    assert replies[1:7] == ["250-filter.test", "250-PIPELINING", "250-SIZE 1000", "250-8BITMIME", "250-DSN",
                            "250 XFORWARD NAME ADDR"]
    assert replies[7].startswith("500")
    assert aiosmtpd.smtp.inspect is inspect


def test_lmtp_answers_lhlo_and_refuses_ehlo_and_helo() -> None:
    replies = asyncio.run(_talk(Features(lmtp=True, **FEATURES), [b"EHLO mta.test", b"HELO mta.test",
                                                                   b"LHLO mta.test"]))
    assert replies[1].startswith("500") and replies[2].startswith("500")
    assert replies[3:] == ["250-filter.test", "250-PIPELINING", "250-SIZE 1000", "250-8BITMIME", "250-DSN",
                           "250 XFORWARD NAME ADDR"]
    assert session_class(Features(lmtp=True, **FEATURES)) is not KavSMTP
