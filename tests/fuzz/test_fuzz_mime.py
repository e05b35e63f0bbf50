"""Fuzz: MIME parsing and rewriting in the filter (runtime/filter/mimeedit.py, notify.py, and the
header handling of process.py).

Properties: any bytes parse; building the recipient/admin copy with any mix of actions never raises
and gives a message that parses again; the X-Anti-Virus header we add is exactly one line whatever
the value; a notice's header fields never carry CR or LF from the message (Subject, names, file
names), and the admin notice can attach any received message.  And the engine's MIME walk
without a parse tree (runtime/engine/mime.leaves_of) gives the standard library's leaves or
declines.
"""

from __future__ import annotations

import email
import email.policy
from email.parser import BytesHeaderParser
from email.policy import compat32

from hypothesis import example, given
from hypothesis import strategies as st

from runtime.config import loads_config
from runtime.filter import mimeedit
from runtime.filter.mimeedit import WHOLE, Finding
from runtime.filter.notify import Notifier, message_part, one_line, report_part
from tests.support.fuzz import nasty_text

_HNAMES = ["Subject", "From", "To", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
           "MIME-Version", "X-Anti-Virus", "Message-ID", "X-\u00e9", "Bad Name", ""]
_HVALUES = [
    'multipart/mixed; boundary="b1"', "multipart/alternative; boundary=b2", "multipart/mixed", "message/rfc822",
    "application/octet-stream; name*=utf-8''%0d%0aBcc%3a%20x.exe", 'application/x; name="=?utf-8?q?a=0D=0Ab?="',
    "text/plain; charset=bogus", "text/plain; charset=\"utf-8", "base64", "quoted-printable", "x-uuencode", "8bit",
    'attachment; filename="eicar.com"', "attachment; filename*0*=utf-8''a; filename*1=%0A", "inline; filename=",
    "=?utf-8?b?U3ViamVjdA0KQmNjOiBldmls?=", "=?utf-8?q?line=0D=0AX-Injected:_1?=", "=?bogus?x?y?=", "1.0",
]
_BODIES = [b"", b"hello\n", b"--b1\nContent-Type: text/plain\n\npart one\n--b1\n\n\npart two\n--b1--\n",
           b"--b2\n\n--b2--\n", b"TWFu\n====\n", b"=0D=0A=\n", b"begin 644 x\nM\nend\n",
           b"From: inner@x\nSubject: inner\n\nbody\n", b"--b1\nContent-Type: multipart/mixed; boundary=b1\n\n--b1\n"]

_header = st.tuples(st.sampled_from(_HNAMES), st.one_of(st.sampled_from(_HVALUES), nasty_text)).map(
    lambda t: f"{t[0]}: {t[1]}".encode("utf-8", "surrogateescape"))
_part = st.tuples(st.lists(_header, max_size=6), st.one_of(st.sampled_from(_BODIES), st.binary(max_size=200)))
message = st.one_of(
    st.lists(_part, min_size=1, max_size=4).map(
        lambda parts: b"".join(b"\n".join(h) + b"\n\n" + body + (b"\n--b1\n" if i < len(parts) - 1 else b"")
                               for i, (h, body) in enumerate(parts))),
    st.binary(max_size=400),
)
_eol = st.sampled_from([b"\n", b"\r\n"])
_STATUSES = ["Infected", "Suspicious", "Cured", "CureFailed", "Protected", "Filtered", "Error"]
_CFG = loads_config("", filename="fuzz.conf")


def _crlf(data: bytes, eol: bytes) -> bytes:
    return data.replace(b"\n", eol) if eol != b"\n" else data


def _removed(f: Finding) -> str:
    return f"The object \"{f.name}\" was removed.\n"


@given(message, _eol, st.lists(st.tuples(st.integers(-1, 6), st.sampled_from(_STATUSES),
                                         st.sampled_from(["remove", "unchanged", "cured", "discard"]),
                                         st.booleans()), max_size=4),
       st.one_of(st.none(), nasty_text))
@example(b"Content-Type: multipart/mixed; boundary=b1\nX-\xc3\xa9: y\n\n", b"\n",
         [(-1, "Infected", "remove", False)], "r")
@example(b"\n\n\x80", b"\n", [], "")  # found: an 8-bit body plus the report part could not be written
@example(b"Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: message/rfc822\n\n--b1--\n", b"\n",
         [(0, "Infected", "remove", False)], "report")
# found by the long run: an 8-bit Content-Transfer-Encoding is a Header object, not a str (cure: 451 forever)
@example(b"Content-Transfer-Encoding: \xc2\x80\n\n", b"\n", [(0, "Cured", "cured", True)], None)
def test_copies_parse_again(data: bytes, eol: bytes, plan: list, report: str | None) -> None:
    data = _crlf(data, eol)
    msg = mimeedit.parse(data)
    names = {i: mimeedit.leaf_name(i, p) for i, p in mimeedit.leaves(msg)}
    for name, _ in names.values():
        assert "\n" not in name and "\r" not in name
    findings = [Finding(WHOLE if i < 0 else i, names.get(i, ("message", False))[0], status,
                        ["Fuzz.Test"], b"cured bytes\n" if cured else None)
                for i, status, _, cured in plan]
    actions = {status: action for _, status, action, _ in plan}
    res = mimeedit.build_copy(data, findings, lambda s: actions.get(s, "remove"), _removed, report)
    again = mimeedit.parse(res.data)
    list(mimeedit.leaves(again))
    assert res.action in ("ActionUnchanged", "ActionCured", "ActionRemoved", "ActionCuredRemoved")


@given(message, _eol, nasty_text)
@example(b"X-Anti-Virus: forged\n verdict\nSubject: s\n\nbody", b"\r\n", "v\r\nBcc: x")
def test_x_header_is_one_line(data: bytes, eol: bytes, value: str) -> None:
    data = _crlf(data, eol)
    out = mimeedit.set_x_header(data, value)
    first, sep, rest = out.partition(b"\n")
    assert first.startswith(b"X-Anti-Virus: ") and sep
    assert b"\r" not in first.rstrip(b"\r")
    assert out.endswith(mimeedit.set_x_header(data, None)), "the rest of the message is kept byte for byte"


@given(message, _eol, nasty_text, nasty_text)
@example(b"Subject: =?utf-8?q?a=0D=0ABcc:_evil@x?=\n\nx", b"\n", "a\r\nBcc: evil@x", "N\rX")
# Found: a multipart whose boundary never comes, with 8-bit text, could not be attached (451 forever).
@example(b'Content-Type: multipart/mixed; boundary="b1"\nX-\xc3\xa9: multipart/mixed; boundary="b1"\n\n', b"\n", "", "")
def test_notices_never_carry_cr_lf_into_headers(data: bytes, eol: bytes, name: str, to: str) -> None:
    data = _crlf(data, eol)
    cut = data.replace(b"\r\n", b"\n").find(b"\n\n")
    flat = data.replace(b"\r\n", b"\n")
    head = BytesHeaderParser(policy=compat32).parsebytes(flat if cut < 0 else flat[: cut + 1])
    subject = one_line(str(head.get("Subject", "") or ""), 300)
    macros = {"VERSION": "kav4mailservers", "SENDER": one_line(to), "RECIPIENT": to, "MSGID": "<x@y>",
              "VIRUSNAME": name, "SHORTNAME": name, "SUBJECT": subject, "DATETIME": "now",
              "HEADERS": "".join(f"{k}: {one_line(str(v), 2000)}\n" for k, v in head.items()), "ACTION": name}
    n = Notifier(_CFG)
    for role in ("admin", "sender", "recipient"):
        attachments = [report_part(name), message_part(flat)] if role == "admin" else None
        out = n.build(role, "infected", one_line(to) or "x@y", macros, attachments)
        parsed = email.message_from_bytes(out, policy=email.policy.compat32)
        assert sorted(parsed.keys()) == sorted(["Content-Type", "MIME-Version", "From", "To", "Subject", "Date",
                                                "Message-ID", "Auto-Submitted", "X-Anti-Virus-Notice"]
                                               + (["Content-Transfer-Encoding"] if role != "admin" else []))
        for k, v in parsed.items():
            assert "\r" not in str(v) and "\n" not in str(v).replace("\n ", " ").replace("\n\t", " "), (k, v)


@given(message, _eol)
@example(b"Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Transfer-Encoding: base64\n\nTWFu\n--b1--\n",
         b"\r\n")
@example(b"Content-Type: multipart/mixed; boundary=b1\n\n--b1\n\n\r\n--b1--\n", b"\n")  # a lone CR in LF mail
def test_engine_leaves_without_the_tree_are_the_standard_librarys(data: bytes, eol: bytes) -> None:
    """runtime/engine/mime.leaves_of (the scanner's path for mail it does not rewrite) gives exactly
    the leaves, names and decoded bytes of the standard library's parse, or declines (None): a
    difference would be an attachment the scan never sees."""
    from runtime.engine import mime as engine_mime

    data = _crlf(data, eol)
    got = engine_mime.leaves_of(data)
    if got is None:
        return
    assert list(got) == [(n, p) for n, p, _part in engine_mime.leaves(engine_mime.parse(data))]
