"""ClamAV's version announcement: one DNS TXT record, checked before anything is downloaded.

ClamAV publishes the current database versions as the TXT record of ``current.cvd.clamav.net``:
colon-separated fields ``engine:main:daily:time:?:flevel:safebrowsing:bytecode``.  Asking DNS is
what lets thousands of hourly cron runs cost the mirrors nothing when nothing changed.

A tiny resolver of our own (one UDP question, one answer) rather than a dependency: the query is
fixed, bounded and needs a configurable server (``[updater.options] DnsServer``, else the first
``nameserver`` of /etc/resolv.conf).  A failed or malformed answer only means "ask the source
itself" (conditional request), never an update decision on its own.
"""

from __future__ import annotations

import secrets
import socket
import struct
from pathlib import Path

FIELDS = {"main": 1, "daily": 2, "bytecode": 7}


class DnsError(Exception):
    pass


def default_server() -> tuple[str, int]:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                return words[1], 53
    except OSError:
        pass
    return "127.0.0.1", 53


def parse_server(text: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (``[v6]:PORT`` for IPv6); empty: /etc/resolv.conf."""
    if not text:
        return default_server()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def _question(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split(".") if p)
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", 16, 1)


def _skip_name(msg: bytes, pos: int) -> int:
    for _ in range(128):
        if pos >= len(msg):
            raise DnsError("truncated name")
        n = msg[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n
    raise DnsError("name too long")


def query_txt(name: str, server: tuple[str, int], timeout: float = 5.0) -> list[str]:
    """The TXT strings of ``name`` (each record's strings joined)."""
    qid = secrets.randbits(16)
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(_question(name, qid), server)
            msg, _ = s.recvfrom(4096)
        except OSError as exc:
            raise DnsError(f"DNS server {server[0]}:{server[1]}: {exc.strerror or exc}") from None
    if len(msg) < 12:
        raise DnsError("short DNS answer")
    rid, flags, qd, an = struct.unpack(">HHHH", msg[:8])
    if rid != qid:
        raise DnsError("DNS answer to another question")
    if flags & 0x000F:
        raise DnsError(f"DNS error code {flags & 0xF} for {name}")
    pos = 12
    for _ in range(qd):
        pos = _skip_name(msg, pos) + 4
    out = []
    for _ in range(an):
        pos = _skip_name(msg, pos)
        if pos + 10 > len(msg):
            raise DnsError("truncated DNS answer")
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", msg[pos:pos + 10])
        pos += 10
        rdata = msg[pos:pos + rdlen]
        pos += rdlen
        if rtype != 16:
            continue
        parts, i = [], 0
        while i < len(rdata):
            n = rdata[i]
            parts.append(rdata[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        out.append("".join(parts))
    return out


def current_versions(name: str, server_text: str = "", timeout: float = 5.0) -> dict[str, int]:
    """``{"main": N, "daily": N, "bytecode": N}`` from the TXT record; raises DnsError."""
    records = query_txt(name, parse_server(server_text), timeout)
    for rec in records:
        fields = rec.split(":")
        if len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
            return {db: int(fields[i]) for db, i in FIELDS.items() if i < len(fields) and fields[i].isdigit()}
    raise DnsError(f"no usable TXT record for {name} (got {records[:2]!r})")
