"""ClamAV target types for body and logical signatures, and the text normalisations they need.

Honoured targets: 0 any, 1 PE, 3 HTML, 4 mail, 6 ELF, 7 ASCII text, 9 Mach-O, 10 PDF.  Others
(OLE2, graphics, Flash, Java, ...) need parsers this engine does not have; signatures for them
are counted unsupported by the loader.

Normalisations (checked against Debian's ``sigtool --ascii-normalise`` / ``--html-normalise``):
- ASCII (7): lower case, every run of whitespace (space, tab, CR, LF, FF, VT) becomes one space.
- HTML (3): the same, plus comments removed and the whitespace right after a ``>`` and at the
  start dropped (``<b> x`` becomes ``<b>x``), matched on that text and on the text with every
  tag removed.  ClamAV additionally decodes entities and script encodings: not done here.

PE section tables (for ``.mdb``/``.msb`` section hashes) are read here as well.
"""

from __future__ import annotations

import re
import struct

SUPPORTED = frozenset({0, 1, 3, 4, 6, 7, 9, 10})
_CTRL = re.compile(rb"[\x00-\x06\x0e-\x1a\x1c-\x1f\x7f]")
_WS = re.compile(rb"[ \t\r\n\x0b\x0c]+")
_COMMENT = re.compile(rb"<!--.*?-->", re.DOTALL)
_TAG = re.compile(rb"<[^<>]*>")
_HTML_HINT = re.compile(rb"<(?:html|body|head|script|iframe|a\s|img\s|form|div|p>|title|meta)", re.I)
_MAIL_HEAD = re.compile(rb"(?:From |Received:|Return-Path:|Delivered-To:|From:|To:|Subject:|Date:|"
                        rb"Message-ID:|MIME-Version:|X-[A-Za-z-]+:)", re.I)


def is_pe(data: bytes) -> bool:
    if data[:2] != b"MZ" or len(data) < 0x40:
        return False
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    return data[lfanew : lfanew + 4] == b"PE\0\0"


def is_text(data: bytes) -> bool:
    head = data[:4096]
    return bool(head) and _CTRL.search(head) is None


def is_html(data: bytes) -> bool:
    return is_text(data) and _HTML_HINT.search(data[:8192]) is not None


def is_mail(data: bytes) -> bool:
    return is_text(data) and _MAIL_HEAD.match(data) is not None


def type_ok(target: int, data: bytes) -> bool:
    if target == 0:
        return True
    if target == 1:
        return data[:2] == b"MZ"  # ClamAV's type for target 1 is decided by the MZ magic alone
    if target == 6:
        return data[:4] == b"\x7fELF"
    if target == 9:
        return data[:4] in (b"\xfe\xed\xfa\xce", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xcf\xfa\xed\xfe",
                            b"\xca\xfe\xba\xbe")
    if target == 10:
        return b"%PDF-" in data[:1024]
    if target == 4:
        return is_mail(data)
    if target == 3:
        return is_html(data)
    if target == 7:
        return is_text(data)
    return False


def _collapse(text: bytes) -> bytes:
    """Every whitespace run one space: ``_WS.sub(b" ", text)``, done by bytes.split (whose
    whitespace is exactly _WS's set) at several times the speed of a regex substitution."""
    body = b" ".join(text.split())
    if not body:
        return b" " if text else b""
    return (b" " if text[:1].isspace() else b"") + body + (b" " if text[-1:].isspace() else b"")


def ascii_normalise(data: bytes) -> bytes:
    return _collapse(data.lower())


class AsciiStream:
    """``ascii_normalise`` of a stream fed in pieces: the concatenation of what ``feed`` returns is
    exactly ``ascii_normalise`` of the concatenated pieces (a whitespace run split between two pieces
    still becomes one space), so a big member's text is matched without holding it."""

    def __init__(self) -> None:
        self._space = False  # the output so far ends with the space of a whitespace run

    SLICE = 1 << 16  # _collapse's split makes one object per word: bounded by slicing

    def feed(self, piece: bytes) -> bytes:
        parts = []
        for at in range(0, len(piece), self.SLICE):
            out = _collapse(piece[at : at + self.SLICE].lower())
            if self._space and out[:1] == b" ":
                out = out[1:]
            if out:
                self._space = out[-1:] == b" "
                parts.append(out)
        return b"".join(parts)


def html_normalise(data: bytes) -> list[bytes]:
    """The two views ClamAV matches HTML signatures on: without comments, and without tags."""
    text = _COMMENT.sub(b"", data.lower())
    text = _collapse(text).replace(b"> ", b">").lstrip(b" ").rstrip(b" ")
    return [text, b" ".join(_TAG.sub(b" ", text).split())]


def views(target: int, data: bytes) -> list[bytes]:
    """What a signature of ``target`` is matched against (empty when the type does not fit)."""
    if not type_ok(target, data):
        return []
    if target == 7:
        return [ascii_normalise(data)]
    if target == 3:
        return html_normalise(data)
    return [data]


def pe_sections(data: bytes) -> list[bytes]:
    """Raw data of each PE section (SizeOfRawData bytes at PointerToRawData), as .mdb hashes them."""
    if not is_pe(data):
        return []
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    try:
        nsect, = struct.unpack_from("<H", data, lfanew + 6)
        opt_size, = struct.unpack_from("<H", data, lfanew + 20)
    except struct.error:
        return []
    table = lfanew + 24 + opt_size
    out = []
    for k in range(min(nsect, 96)):
        off = table + 40 * k
        if off + 40 > len(data):
            break
        raw_size, raw_ptr = struct.unpack_from("<II", data, off + 16)
        if raw_size and raw_ptr + raw_size <= len(data):
            out.append(data[raw_ptr : raw_ptr + raw_size])
    return out
