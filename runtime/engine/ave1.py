"""The ``AVE/1`` wire format (docs/aveserver-protocol.md), both directions, without I/O.

aveserver, the blocking client (aveclient) and the mail filter's asyncio client all speak it;
building and reading the lines here, once, keeps the three from drifting apart.  Callers do the
reading and writing themselves (a socket, an asyncio stream), this module only turns lines into
values and values into bytes.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

MAGIC = b"AVE/1 "
MAX_LINE = 65536  # a request or reply line, LF included


class AveServerUnavailable(Exception):
    """aveserver could not be reached or did not answer in time (temporary failure)."""


class AveServerError(Exception):
    """aveserver answered with an error for this request (e.g. object too large, unreadable file)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code


class BadRequest(Exception):
    """A request line the server does not accept; ``close``: the stream cannot be trusted after it."""

    def __init__(self, message: str, close: bool) -> None:
        super().__init__(message)
        self.close = close


def _flags(cure: bool, all_objects: bool) -> str:
    return ("c" if cure else "") + ("a" if all_objects else "") or "-"


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="/")


# -- requests: built by the clients, parsed by aveserver -------------------------------------------
PING = b"AVE/1 PING\n"
VERSION = b"AVE/1 VERSION\n"
QUIT = b"AVE/1 QUIT\n"


def scan_data(size: int, name: str, cure: bool = False, all_objects: bool = False) -> bytes:
    """The SCANDATA line; ``size`` raw bytes of the object follow it."""
    return f"AVE/1 SCANDATA {_flags(cure, all_objects)} {size} {_quote(name or 'stream')}\n".encode()


def scan_file(path: str, cure: bool = False, all_objects: bool = False) -> bytes:
    return f"AVE/1 SCANFILE {_flags(cure, all_objects)} {_quote(path)}\n".encode()


def scan_fd(name: str, cure: bool = False, all_objects: bool = False) -> bytes:
    """The SCANFD line; the client sends it with one open descriptor (``SCM_RIGHTS``) of a regular
    file, which aveserver reads from its start.  The filter hands over its spool file this way:
    the message never crosses the socket and aveserver needs no access to TempPath."""
    return f"AVE/1 SCANFD {_flags(cure, all_objects)} {_quote(name or 'stream')}\n".encode()


@dataclass(frozen=True)
class Request:
    verb: str  # PING, VERSION, SCANFILE, SCANDATA, SCANFD, QUIT
    flags: str = "-"
    size: int = 0  # SCANDATA: bytes that follow the line
    name: str = ""  # SCANFILE: the path; SCANDATA, SCANFD: the object's name

    @property
    def cure(self) -> bool:
        return "c" in self.flags

    @property
    def all_objects(self) -> bool:
        return "a" in self.flags


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' or '٣', which int() then refuses (found by
    tests/fuzz/test_fuzz_engine.py)."""
    return text.isascii() and text.isdigit()


def parse_request(line: str) -> Request:
    parts = line.rstrip("\r").split(" ")
    if len(parts) < 2 or parts[0] != "AVE/1":
        raise BadRequest("bad request line", close=True)
    verb, args = parts[1].upper(), parts[2:]
    if verb in ("PING", "VERSION", "QUIT"):
        return Request(verb)
    if verb == "SCANFILE" and len(args) == 2:
        return Request(verb, args[0], name=urllib.parse.unquote(args[1]))
    if verb == "SCANFD" and len(args) == 2:
        return Request(verb, args[0], name=urllib.parse.unquote(args[1]))
    if verb == "SCANDATA" and len(args) == 3 and _digits(args[1]):
        return Request(verb, args[0], int(args[1]), urllib.parse.unquote(args[2]))
    raise BadRequest(f"unknown or malformed command {verb}", close=False)


# -- replies: built by aveserver, parsed by the clients --------------------------------------------
PONG = b"AVE/1 200 PONG\n"


def error(code: int, message: str) -> bytes:
    return f"AVE/1 {code} {message}\n".encode()


def cannot_read(path: str, reason: str) -> bytes:
    return error(404, f"cannot read {_quote(path)}: {reason}")


def version_reply(doc: dict[str, object]) -> bytes:
    return f"AVE/1 200 {json.dumps(doc)}\n".encode()


def result(doc: bytes, cured: bytes | None) -> bytes:
    """The RESULT line, the verdict's JSON and the cured object, as one write."""
    cured_len = "-" if cured is None else str(len(cured))
    return f"AVE/1 200 RESULT {len(doc)} {cured_len}\n".encode() + doc + (cured or b"")


def is_pong(line: str) -> bool:
    return line == "AVE/1 200 PONG"


def parse_version(line: str) -> dict[str, object]:
    if not line.startswith("AVE/1 200 "):
        raise AveServerUnavailable(f"unexpected reply from aveserver: {line[:200]!r}")
    try:
        doc = json.loads(line[len("AVE/1 200 "):])
    except ValueError:
        doc = None
    if not isinstance(doc, dict):  # out of step or not an aveserver: the same as any garbled reply
        raise AveServerUnavailable(f"unexpected reply from aveserver: {line[:200]!r}")
    return doc


@dataclass(frozen=True)
class ResultHead:
    """What the RESULT line announces: the JSON's length, then the cured object's (or None)."""

    doc_len: int
    cured_len: int | None


def parse_result(line: str) -> ResultHead:
    """Raises AveServerError for an error reply, AveServerUnavailable for anything unexpected
    (the connection is then out of step and must be dropped)."""
    parts = line.split(" ")
    if len(parts) >= 3 and parts[0] == "AVE/1" and parts[1] != "200":
        raise AveServerError(int(parts[1]) if _digits(parts[1]) else 500, " ".join(parts[2:]))
    if (len(parts) != 5 or parts[0] != "AVE/1" or parts[2] != "RESULT" or not _digits(parts[3])
            or not (parts[4] == "-" or _digits(parts[4]))):
        raise AveServerUnavailable(f"unexpected reply from aveserver: {line[:200]!r}")
    return ResultHead(int(parts[3]), None if parts[4] == "-" else int(parts[4]))
