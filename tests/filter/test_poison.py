"""Messages that used to poison the filter (issue 11 items 9 and 11): deep MIME nesting, hundreds
of thousands of parts, a message larger than aveserver's StreamMaxLength.  Each gets a final
answer by the group's rules for objects that could not be scanned, never a 451 that repeats until
the queue lifetime ends, and content the filter could not scan is never destroyed without a copy.
"""

from __future__ import annotations

import threading

import pytest

from runtime.filter.quarantine import Quarantine
from tests.support.filter import mail

BOB = "bob@example.com"
HEAD = b"From: alice@example.com\nTo: bob@example.com\nSubject: poison\nMIME-Version: 1.0\n"


def nested(depth: int) -> bytes:
    body, ct = b"hello\n", b"Content-Type: text/plain\n"
    for i in range(depth):
        b = b"b%d" % i
        body = b"--" + b + b"\n" + ct + b"\n" + body + b"\n--" + b + b"--\n"
        ct = b'Content-Type: multipart/mixed; boundary="' + b + b'"\n'
    return HEAD + ct + b"\n" + body


def many_parts(n: int) -> bytes:
    return (HEAD + b'Content-Type: multipart/mixed; boundary="B"\n\n'
            + b"--B\nContent-Type: text/plain\n\nx\n" * n + b"--B--\n")


def _group(st, **kw: object) -> dict[str, object]:  # noqa: ANN001
    return {"QuarantinePath": st.quarantine, **kw}


@pytest.mark.parametrize(("data", "why"), [
    (nested(400), "MIME nesting deeper than MaxDepth (16)"),
    (nested(2000), "MIME nesting deeper than MaxDepth (16)"),
])
def test_deep_nesting_gets_a_final_answer_and_a_kept_copy(make_stack, data: bytes, why: str) -> None:  # noqa: ANN001
    st = make_stack({}, start=False)
    st.write({"default": _group(st)})
    st.start()
    replies = st.send(data)
    assert replies[BOB][0] == 250, replies  # final: the group's Error rules (remove, keep a copy)
    (copy,) = st.sink.deliveries()
    body = copy.data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    assert b"could not be scanned" in body and b"hello" not in body
    q = Quarantine(st.quarantine)
    (qid,) = q.ids()
    assert q.load(qid).message.replace(b"\r\n", b"\n").rstrip() == data.rstrip()  # nothing destroyed: a copy is kept
    assert why in st.log.read_text()


def test_error_unchanged_delivers_the_deep_message_as_is(make_stack) -> None:  # noqa: ANN001
    st = make_stack({}, start=False)
    st.write({"default": _group(st, ErrorRecipientAction="unchanged", AdminNotify=False, RecipientNotify=False)})
    st.start()
    data = nested(2000)
    assert st.send(data)[BOB][0] == 250
    (copy,) = st.sink.deliveries()
    assert data.split(b"\n\n", 1)[1].rstrip() in copy.data.replace(b"\r\n", b"\n")  # the body, byte for byte
    assert not Quarantine(st.quarantine).ids()


def test_200k_parts_are_decided_and_other_sessions_keep_flowing(make_stack) -> None:  # noqa: ANN001
    st = make_stack({}, start=False)
    st.write({"default": _group(st, AdminNotify=False, RecipientNotify=False)})
    st.start()
    data = many_parts(200_000)
    assert len(data) > 6_000_000
    got: dict[str, object] = {}
    t = threading.Thread(target=lambda: got.update(poison=st.send(data)))
    t.start()
    clean = st.send(mail("meanwhile"), rcpts=["carol@example.com"])
    t.join(120)
    assert clean["carol@example.com"][0] == 250
    assert got["poison"][BOB][0] == 250, got  # type: ignore[index]
    assert "more than MaxFiles (10000) MIME parts" in st.log.read_text()


def test_larger_than_streammaxlength_is_never_destroyed_without_a_copy(make_stack) -> None:  # noqa: ANN001
    """MaxMessageSize=0 lets through what aveserver refuses to scan (StreamMaxLength): the
    recipient's copy loses the object (the group's Error rule), the quarantine keeps it."""
    st = make_stack({}, start=False)
    st.write({"default": _group(st)}, extra={"aveserver.options": {"StreamMaxLength": 20000},
                                             "smtpscan.limits": {"MaxMessageSize": 0}})
    st.start()
    data = mail("big", attachments={"big.bin": b"A" * 40000})
    assert st.send(data)[BOB][0] == 250
    (copy,) = st.sink.deliveries()
    assert b"could not be scanned" in copy.data
    q = Quarantine(st.quarantine)
    (qid,) = q.ids()
    assert q.load(qid).message.replace(b"\r\n", b"\n").rstrip() == data.replace(b"\r\n", b"\n").rstrip()
    assert "keeping a copy in the quarantine" in st.log.read_text()
