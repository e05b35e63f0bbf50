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
