"""MIME messages as containers: every leaf part decoded (base64, quoted-printable, uuencode).

The mail filter hands aveserver whole messages (guide 2.1), so a message is the most common
container.  Leaf parts are decoded by the standard library (nested multiparts and message/rfc822
included); a uuencoded block inside a text part is found by the generic unpacker afterwards.
When a cure was requested, cured parts are re-encoded in place and the message is regenerated,
so the filter can deliver the disinfected message (guide 6.1.2/6.1.3).
"""

from __future__ import annotations

import base64
import binascii
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


# -- leaves without the parse tree (big mail, issue 20) --------------------------------------------
_HEADER_RE = re.compile(rb"(?:From |[\041-\071\073-\176]*:|[\t ])")
_COMPAT32 = email.policy.compat32


class _Unsimple(Exception):
    """The structure needs the standard library's parser (see :func:`leaves_of`)."""


def leaves_of(data: bytes) -> Iterator[tuple[str, bytes]] | None:
    """``(name, payload)`` of every leaf, in :func:`leaves` order with the same names and bytes,
    without building the message tree; None when the message needs the full parser.

    ``email`` holds the message as text, then each part's body as text, then its decoded bytes:
    ~7x a 50 MB message at its peak.  Here the structure is found by searching the bytes for
    boundary lines, each part's header block alone goes through the standard header parser (the
    same content types, boundaries, file names and transfer encodings), and a leaf is decoded
    straight from a view of the message, one at a time: the message plus one decoded leaf.
    Everything the feed parser treats specially is left to it (returns None): a bare CR line end,
    message/* parts, multipart/digest, a multipart without its boundary, an unclosed or empty
    part list, a boundary reused inside, uuencode, undecodable base64 (checked before the first
    leaf is given, so callers never see a partial list)."""
    crs = data.count(b"\r")
    if crs and crs != data.count(b"\r\n"):
        return None
    try:
        plan = _plan(data, crs > 0)
    except (_Unsimple, UnicodeError, ValueError, LookupError, TypeError, AttributeError):
        # e.g. a boundary with non-ASCII characters (RFC 2231): whatever surprises the direct
        # path, the feed parser's handling stays the reference.
        return None
    return _decode_all(data, plan)


def _header_block(data: bytes, start: int, end: int) -> tuple[Message, int]:
    """The entity's headers (parsed by the standard header parser) and where its body starts,
    found the way the feed parser does: header lines run until a blank or non-header line."""
    pos = start
    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        if data[pos:pos + 1] in (b"\n", b"\r"):  # the blank separator line: dropped
            return _headers(data, start, pos), line_end
        if not _HEADER_RE.match(data, pos, line_end):
            return _headers(data, start, pos), pos  # no separator: this line starts the body
        pos = line_end
    return _headers(data, start, end), end


#: The fields _plan reads (content type and boundary, file name, transfer encoding).
_WANTED = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})


def _headers(data: bytes, start: int, end: int) -> Message:
    """The header lines [start, end) as the feed parser's ``_parse_headers`` stores them (the same
    policy call per field), without a feed parser per part: for small mail that machinery cost
    more than scanning the parts.  Only the fields in ``_WANTED`` are stored: ``Message.get``
    returns the first field of a name, whichever others sit between, so what _plan reads is the
    same, and a top-level header of twenty fields costs three policy calls, not twenty."""
    text = data[start:end].decode("ascii", "surrogateescape")
    pieces = text.split("\n")
    lines = [p + "\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    msg = Message(policy=_COMPAT32)
    last: list[str] = []
    for n, line in enumerate(lines):
        if line[0] in " \t":
            if last:
                last.append(line)
            continue  # a first line that is a continuation is dropped (a defect)
        if last:
            msg.set_raw(*_COMPAT32.header_source_parse(last))
            last = []
        if line.startswith("From "):
            if n == 0:
                msg.set_unixfrom(line.rstrip("\r\n"))
            elif n == len(lines) - 1:
                raise _Unsimple  # the feed parser moves it into the body
            continue  # a misplaced envelope line is dropped (a defect)
        colon = line.find(":")
        if colon > 0 and line[:colon].lower() in _WANTED:
            last = [line]
    if last:
        msg.set_raw(*_COMPAT32.header_source_parse(last))
    return msg


def _boundary_lines(data: bytes, sep: bytes, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
    """(line start, next line start, closing) of every line matching the feed parser's boundary
    pattern ``--B(--)?[ \t]*EOL`` within [start, end)."""
    pos = start
    while True:
        i = data.find(sep, pos, end)
        if i < 0:
            return
        pos = i + 1
        if i != start and data[i - 1:i] != b"\n":
            continue
        j = i + len(sep)
        closing = data[j:j + 2] == b"--"
        if closing:
            j += 2
        while j < end and data[j:j + 1] in (b" ", b"\t"):
            j += 1
        if j < end and data[j:j + 1] not in (b"\n", b"\r"):
            continue
        nl = data.find(b"\n", j, end)
        yield i, (end if nl < 0 else nl + 1), closing


def _strip_eol(data: bytes, start: int, end: int) -> int:
    if end > start and data[end - 1:end] == b"\n":
        end -= 1
        if end > start and data[end - 1:end] == b"\r":
            end -= 1
    return end


def _plan(data: bytes, crs: bool) -> list[tuple[str, str, int, int]]:
    """(name, transfer encoding, body start, body end) of every leaf, walking iteratively;
    ``crs``: the message has CRs at all (leaves_of counted them)."""
    out: list[tuple[str, str, int, int]] = []
    # (entity start, end, inside a multipart, boundaries of the enclosing multiparts)
    stack: list[tuple[int, int, bool, tuple[bytes, ...]]] = [(0, len(data), False, ())]
    index = 0
    while stack:
        start, end, in_multi, outer = stack.pop()
        head, body = _header_block(data, start, end)
        n, index = index, index + 1
        ctype = head.get_content_type()  # each call parses the field again: once per entity
        maintype = ctype.split("/")[0]  # what get_content_maintype() returns
        if maintype == "message" or ctype == "multipart/digest":
            raise _Unsimple
        if maintype == "multipart":
            b = head.get_boundary()
            if b is None:
                raise _Unsimple
            bsep = b"--" + b.encode("ascii", "surrogateescape")
            if any(o.startswith(bsep) or bsep.startswith(o) for o in outer):
                raise _Unsimple
            lines = list(_boundary_lines(data, bsep, body, end))
            if not lines or lines[0][2]:
                raise _Unsimple  # no part at all: the feed parser keeps the text as the payload
            children = []
            for (_, nxt, closing), following in zip(lines, lines[1:] + [None], strict=True):
                if closing:
                    break
                if following is not None and following[0] == nxt:
                    raise _Unsimple  # two boundary lines in a row: the feed parser skips parts
                children.append((nxt, end if following is None else following[0], True, (*outer, bsep)))
            stack.extend(reversed(children))
            continue
        name = head.get_filename()
        cte = str(head.get("content-transfer-encoding", "")).lower()
        if cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
            raise _Unsimple
        stop = _strip_eol(data, body, end) if in_multi else end
        out.append((safe_name(str(name)) if name else f"part{n}", cte, body, stop))
    for _, cte, b0, b1 in out:
        if cte == "base64":
            alpha = (b1 - b0) - data.count(b"\n", b0, b1) - (data.count(b"\r", b0, b1) if crs else 0)
            if alpha % 4:
                raise _Unsimple  # the standard library pads it; leave that to it
    return out


def _decode_all(data: bytes, plan: list[tuple[str, str, int, int]]) -> Iterator[tuple[str, bytes]]:
    view = memoryview(data)
    for name, cte, start, end in plan:
        part = view[start:end]
        if cte == "quoted-printable":
            payload = binascii.a2b_qp(part, header=False)
        elif cte == "base64":
            try:
                payload = binascii.a2b_base64(part)
            except binascii.Error:
                payload = _stdlib_b64(bytes(part))
        else:
            payload = bytes(part)
        del part
        yield name, payload


def _stdlib_b64(raw: bytes) -> bytes:
    """The standard library's lenient base64 decoding, for a part that strict decoding refuses."""
    msg = Message()
    msg["Content-Transfer-Encoding"] = "base64"
    msg.set_payload(raw.decode("ascii", "surrogateescape"))
    return msg.get_payload(decode=True) or b""


def replace_payload(part: Message, data: bytes | None) -> None:
    """Put cured bytes (or nothing, for a deleted object) into a part, keeping its encoding."""
    # str(): a field with 8-bit bytes comes back from the compat32 parser as a Header object
    cte = str(part.get("Content-Transfer-Encoding") or "").strip().lower()
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
    pos, size = 0, len(data)
    while pos <= size:
        if not in_header and data[pos:pos + 2] != b"--":
            # In a body only a line starting with "--" can matter: jump to the next one rather
            # than walking every line of a big attachment in Python.
            nxt = data.find(b"\n--", pos)
            if nxt < 0:
                break
            pos = nxt + 1
        end = data.find(b"\n", pos)
        raw = data[pos:size] if end < 0 else data[pos:end]
        pos = size + 1 if end < 0 else end + 1
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
