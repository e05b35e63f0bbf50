"""Per-object actions on a message copy (guide 6.1.3): remove, unchanged, cured.

A removed object's part is replaced in place by a short text part saying what was removed and why,
so the recipient sees that something was there; a cured object gets the disinfected bytes in its
original transfer encoding.  Copies are built from a fresh parse of the received bytes, and leaves
are addressed by their position in ``walk()`` order, which is stable for the same bytes.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import Message
from email.mime.text import MIMEText

from runtime.engine import mime as engine_mime
from runtime.engine.verdict import ObjectResult

WHOLE = -1  # a finding about the message as a whole (no single part carries it)


@dataclass
class Finding:
    """One object of the message that is not clean, with the status spelt as config keys are."""

    index: int
    name: str
    status: str  # Infected, Suspicious, Warning, Corrupted, Protected, Error, Cured, CureFailed, Filtered
    names: list[str] = field(default_factory=list)
    cured: bytes | None = None
    deleted: bool = False
    objects: list[ObjectResult] = field(default_factory=list)


def parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


class _Generator(BytesGenerator):
    """BytesGenerator that writes a malformed multipart (its boundary never found, so its payload
    is the raw text) back as received.  The stock one writes ``get_payload()``, which decodes 8-bit
    bytes to characters it then cannot encode: UnicodeEncodeError, and the message was answered 451
    on every retry (found by tests/fuzz/test_fuzz_mime.py).  ``_handle_<maintype>`` is the
    generator's own dispatch hook."""

    def _handle_multipart(self, msg: Message) -> None:
        if isinstance(msg._payload, str):  # noqa: SLF001 - the raw text of a boundary-less multipart
            self._handle_text(msg)
            return
        super()._handle_multipart(msg)

    def _encode(self, s: str) -> bytes:
        # An attached message/rfc822 is flattened to text first; 8-bit bytes in it (a header name
        # such as ``X-\xc3\xa9``) come back as surrogates. Write them as the bytes received rather
        # than fail the whole notice (found by tests/fuzz/test_fuzz_mime.py).
        return s.encode("ascii", "surrogateescape")


def serialize(msg: Message, maxheaderlen: int = 0) -> bytes:
    buf = io.BytesIO()
    _Generator(buf, mangle_from_=False, maxheaderlen=maxheaderlen).flatten(msg)
    return buf.getvalue()


def leaves(msg: Message) -> Iterator[tuple[int, Message]]:
    n = 0
    for part in msg.walk():
        if part.is_multipart():
            continue
        yield n, part
        n += 1


def leaf_name(index: int, part: Message) -> tuple[str, bool]:
    """(display name, is a real file name) of a leaf."""
    try:
        fname = part.get_filename()
    except Exception:  # noqa: BLE001 - malformed RFC 2231 parameters
        fname = None
    if fname:
        return _printable(str(fname)), True
    return ("message body" if index == 0 and not part.get("Content-Disposition") else f"part {index + 1}"), False


def _printable(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)[:200]


def _replace_with_text(part: Message, text: str) -> None:
    for h in ("Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID",
              "Content-Description"):
        del part[h]
    if part.get("MIME-Version") is None and part.get("Subject") is not None:
        part["MIME-Version"] = "1.0"
    repl = MIMEText(text, "plain", "us-ascii" if text.isascii() else "utf-8")
    part["Content-Type"] = repl["Content-Type"]
    part["Content-Transfer-Encoding"] = repl["Content-Transfer-Encoding"]
    part["Content-Disposition"] = "inline"
    part.set_payload(repl.get_payload())


@dataclass
class CopyResult:
    data: bytes
    kept: int = 0
    cured: int = 0
    removed: int = 0

    @property
    def action(self) -> str:
        """The [locale] key for %ACTION% (guide 6.1.4)."""
        if self.removed and self.cured:
            return "ActionCuredRemoved"
        if self.removed:
            return "ActionRemoved"
        if self.cured:
            return "ActionCured"
        return "ActionUnchanged"


def outcome(status: str, action: str, deleted: bool) -> str:
    """What happens to one object: kept | cured | removed (6.1.3)."""
    if action == "unchanged":
        return "kept"
    if status == "Cured" and action == "cured":
        return "removed" if deleted else "cured"
    # "cured" delivers only clean or disinfected objects: anything else is removed.
    return "removed"


def build_copy(data: bytes, findings: list[Finding], action_of: Callable[[str], str],
               removed_text: Callable[[Finding], str], report: str | None = None) -> CopyResult:
    """The message with each finding's action applied (and an optional report part appended)."""
    if not findings and report is None:
        return CopyResult(data)
    plan = [(f, outcome(f.status, action_of(f.status), f.deleted)) for f in findings]
    res = CopyResult(data)
    for _, what in plan:
        setattr(res, what, getattr(res, what) + 1)
    if res.kept == len(plan) and report is None:
        return res
    # A finding about the whole message never parses its body (it may be why it could not be
    # scanned: nested too deep for the parser, too many parts): headers parsed, body kept raw.
    whole = any(f.index == WHOLE for f in findings)
    msg = _shallow(data) if whole else parse(data)
    parts = {} if whole else dict(leaves(msg))
    for f, what in plan:
        target = msg if f.index == WHOLE else parts.get(f.index)
        if target is None or what == "kept":
            continue
        if what == "cured" and f.cured is not None:
            engine_mime.replace_payload(target, f.cured)
        else:
            if target is msg and msg.is_multipart():
                msg.set_payload(None)
            _replace_with_text(target, removed_text(f))
    if report is not None:
        msg = _with_report(msg, report)
    res.data = serialize(msg)
    return res


def _shallow(data: bytes) -> Message:
    """Headers parsed, the body one raw string (the generator writes it back unchanged)."""
    return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data, headersonly=True)


def _with_report(msg: Message, report: str) -> Message:
    part = MIMEText(report, "plain", "us-ascii" if report.isascii() else "utf-8")
    part["Content-Disposition"] = 'inline; filename="anti-virus-report.txt"'
    part["Content-Description"] = "Anti-virus report"
    if msg.is_multipart() and msg.get_content_subtype() == "mixed":
        msg.attach(part)
        return msg
    from email.mime.multipart import MIMEMultipart

    outer = MIMEMultipart("mixed")
    del outer["MIME-Version"]
    for key, value in msg.items():
        if not key.lower().startswith("content-") and key.lower() != "mime-version":
            outer[key] = value
    # The message itself becomes the first part, its payload untouched: copying it with
    # get_payload() would turn 8-bit bytes into U+FFFD, which the generator then cannot write
    # (found by tests/fuzz/test_fuzz_mime.py: every such message was answered 451 forever).
    for key in dict.fromkeys(k.lower() for k in msg.keys() if not k.lower().startswith("content-")):
        del msg[key]
    if msg.get("Content-Type") is None:
        msg["Content-Type"] = "text/plain"
    outer["MIME-Version"] = "1.0"
    outer.attach(msg)
    outer.attach(part)
    return outer


_XAV = re.compile(rb"^X-Anti-Virus:.*(?:\r?\n[ \t].*)*\r?\n", re.IGNORECASE | re.MULTILINE)


def header_end(data: bytes) -> int:
    """Where the header block ends (the index of its blank line's first byte, minus one), or -1.
    Only the header block is searched for a CRLF blank line, so a big body is not read."""
    end = data.find(b"\n\n")
    crlf = data.find(b"\r\n\r\n", 0, None if end < 0 else end + 3)
    if crlf >= 0 and (end < 0 or crlf < end):
        end = crlf
    return end


def set_x_header(data: bytes, value: str | None) -> bytes:
    """Drop any X-Anti-Virus: header that came from outside (it could fake a verdict) and put ours
    first (guide 6.8.4).  Works on raw bytes so an unchanged message stays byte for byte."""
    end = header_end(data)
    head, body = (data, b"") if end < 0 else (data[: end + 1], data[end + 1:])
    return set_x_header_head(head, value) + body


def set_x_header_head(head: bytes, value: str | None) -> bytes:
    """:func:`set_x_header` for a header block alone (``data[:header_end(data) + 1]``): the body
    of a big unchanged copy stays in the spool file."""
    data = head
    if b"x-anti-virus:" in head.lower():
        head = _XAV.sub(b"", head)
    if value is None:
        return head
    eol = b"\r\n" if b"\r\n" in head[:2000] or (not head and b"\r\n" in data) else b"\n"
    line = b"X-Anti-Virus: " + re.sub(r"[\r\n\x00]", " ", value).encode("ascii", "replace") + eol
    return line + head
