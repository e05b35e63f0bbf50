"""MIME messages as containers: every leaf part decoded (base64, quoted-printable, uuencode).

The mail filter hands aveserver whole messages (guide 2.1), so a message is the most common
container.  Leaf parts are decoded by the standard library (nested multiparts and message/rfc822
included); a uuencoded block inside a text part is found by the generic unpacker afterwards.
When a cure was requested, cured parts are re-encoded in place and the message is regenerated,
so the filter can deliver the disinfected message (guide 6.1.2/6.1.3).
"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import quopri
import re
from collections.abc import Iterator
from email.generator import BytesGenerator
from email.message import Message

from .verdict import safe_name

_HEADER_LINE = re.compile(rb"^(?:[!-9;-~]+:|From |[ \t])")
_KNOWN = (b"content-type:", b"mime-version:", b"received:", b"subject:", b"from:", b"to:",
          b"message-id:", b"return-path:", b"date:", b"delivered-to:")


def looks_like_mail(data: bytes) -> bool:
    """An RFC 5322 header block at the start, with enough familiar header names."""
    head = data[:65536]
    end = head.find(b"\n\n")
    end_crlf = head.find(b"\r\n\r\n")
    if end < 0 or (0 <= end_crlf < end):
        end = end_crlf
    if end <= 0:
        if len(data) > len(head):
            return False
        end = len(head)
    lines = head[:end].split(b"\n")
    if not lines or not lines[0] or lines[0][:1] in b" \t":
        return False
    if any(line.strip(b"\r") and not _HEADER_LINE.match(line) for line in lines):
        return False
    lower = head[:end].lower()
    if b"\ncontent-type:" in b"\n" + lower or b"\nmime-version:" in b"\n" + lower:
        return True
    return sum(1 for k in _KNOWN if b"\n" + k in b"\n" + lower) >= 2


def parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def leaves(msg: Message) -> Iterator[tuple[str, bytes, Message]]:
    """(display name, decoded payload, part) for every non-multipart part."""
    for n, part in enumerate(msg.walk()):
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if payload is None:
            payload = b""
        fname = part.get_filename()
        name = safe_name(str(fname)) if fname else f"part{n}"
        yield name, payload, part


def replace_payload(part: Message, data: bytes | None) -> None:
    """Put cured bytes (or nothing, for a deleted object) into a part, keeping its encoding."""
    cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
    del part["Content-Transfer-Encoding"]
    body = data or b""
    if data is None:
        part.add_header("X-Anti-Virus-Deleted", "yes")
    if cte == "quoted-printable":
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(quopri.encodestring(body).decode("ascii"))
    elif cte in ("", "7bit", "8bit") and body.isascii():
        if cte:
            part["Content-Transfer-Encoding"] = cte
        part.set_payload(body.decode("ascii"))
    else:
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(base64.encodebytes(body).decode("ascii"))


def serialize(msg: Message) -> bytes:
    buf = io.BytesIO()
    BytesGenerator(buf, mangle_from_=False, maxheaderlen=0).flatten(msg)
    return buf.getvalue()


# -- bounded structure check (issue 11 item 11) ---------------------------------------------------
_CT_MULTI = re.compile(rb"^content-type:\s*multipart/[^;\s]*(.*)$", re.IGNORECASE | re.DOTALL)
_CT_RFC822 = re.compile(rb"^content-type:\s*message/rfc822", re.IGNORECASE)
_BOUNDARY = re.compile(rb"""boundary\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]+))""", re.IGNORECASE)


def _lines(data: bytes) -> Iterator[bytes]:
    """``data.split(b"\\n")`` one line at a time: a 50 MB message is ~650 000 lines, which as
    one list cost more memory than the message itself.  Works on any bytes-like object with
    ``find`` and slicing (the filter passes a memory-mapped spool file)."""
    start, n = 0, len(data)
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            yield data[start:n]
            return
        yield data[start:end]
        start = end + 1


def structure_problem(data: bytes, max_depth: int, max_parts: int) -> str | None:
    """Why a message is too deeply nested or has too many parts to be parsed, or None.

    The standard library's parser and generator recurse once per nesting level (RecursionError
    near 1000 levels, and minutes of work for 200 000 parts), so before anything parses a message
    this reads its lines once, iteratively, keeping a stack of the open multipart boundaries:
    linear time, constant stack.  MIME nesting (multiparts and message/rfc822) counts toward
    ``[aveserver.limits] MaxDepth``, parts toward ``MaxFiles``."""
    stack: list[bytes | None] = []  # open multipart boundaries and (None) message/rfc822 levels
    parts = 0
    in_header = True
    header: list[bytes] = []
    for raw in _lines(data):
        line = raw.rstrip(b"\r")
        if in_header:
            if line and line[:1] in b" \t" and header:
                header[-1] += b" " + line.strip()
                continue
            if line:
                header.append(line)
                continue
            in_header = False
            for h in header:
                m = _CT_MULTI.match(h)
                if m:
                    b = _BOUNDARY.search(m.group(1))
                    if b:
                        stack.append((b.group(1) if b.group(1) is not None else b.group(2)).strip())
                elif _CT_RFC822.match(h):
                    stack.append(None)
                    in_header = True  # the body is another message: its header block follows at once
            header = []
            if len(stack) > max_depth:
                return f"MIME nesting deeper than MaxDepth ({max_depth})"
            continue
        if not line.startswith(b"--"):
            continue
        tail = line[2:].rstrip(b" \t")
        closing = tail.endswith(b"--") and tail[:-2] in stack
        name = tail[:-2] if closing else tail
        if not name or name not in stack:
            continue
        while stack[-1] != name:  # what was opened inside the part ends with its boundary
            stack.pop()
        if closing:
            stack.pop()
            continue
        parts += 1
        if parts > max_parts:
            return f"more than MaxFiles ({max_parts}) MIME parts"
        in_header = True
    return None
