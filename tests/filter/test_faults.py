"""Faults: every message ends 4xx at the client and is intact when retried; none lost or half-sent.

aveserver killed, aveserver dying mid-scan, aveserver hanging past MaxCheckTime, the next hop
refusing (temporarily and permanently), vanishing after the message data, stalling, or down.
"""

from __future__ import annotations

import time

from tests.support.filter import EICAR, FakeAve, Sink, eicar_mail, mail

BOB = "bob@example.com"
GROUP = {"default": {"AdminAddress": "admin@example.com"}}


def body_of(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]


def assert_deferred(replies: dict[str, tuple[int, bytes]]) -> None:
    for code, text in replies.values():
        assert 400 <= code < 500, (code, text)


def test_aveserver_down_killed_dying_and_hanging(make_stack) -> None:  # noqa: ANN001
    st = make_stack(GROUP, extra={"smtpscan.limits": {"MaxCheckTime": 2}})
    original = mail("keep me", {"doc.txt": b"important\n"})
    assert st.send(original)[BOB][0] == 250  # warm: pooled aveserver connection exists
    st.sink.got.clear()
    st.kill_ave()  # kill -9 the daemon and its workers
    replies = st.send(original)
    assert_deferred(replies)
    assert b"4.7.1" in replies[BOB][1]
    # a stand-in that reads the request and dies mid-scan
    fake = FakeAve(st.sock, "crash")
    try:
        assert_deferred(st.send(original))
        assert fake.requests >= 1
    finally:
        fake.stop()
    # a stand-in that never answers: MaxCheckTime=2 fires
    fake = FakeAve(st.sock, "hang")
    try:
        t0 = time.monotonic()
        replies = st.send(eicar_mail("EICAR"))
        assert_deferred(replies)
        assert time.monotonic() - t0 < 8
        assert b"MaxCheckTime" in replies[BOB][1]
    finally:
        fake.stop()
    assert st.sink.got == [], "nothing went out while the scan could not be done"
    assert st.spool_files() == [], "spool files removed on every path"
    log = st.log_text()
    assert "aveserver unavailable" in log and "answered 4xx" in log
    # retry once aveserver is back: delivered, intact
    st.start_ave()
    assert st.send(original)[BOB][0] == 250
    (copy,) = st.sink.deliveries()
    assert body_of(copy.data) == body_of(original)


def test_next_hop_refusing_vanishing_stalling_down(make_stack) -> None:  # noqa: ANN001
    st = make_stack(GROUP, extra={"smtpscan.limits": {"MaxCheckTime": 2}})
    original = mail("precious", {"doc.txt": b"important\n"})
    for mode in ("tempfail_rcpt", "permfail_rcpt", "tempfail_data", "drop_after_data", "stall"):
        st.sink.mode = mode
        replies = st.send(original)
        assert_deferred(replies)  # never 5xx, never 250
        assert st.sink.got == [], mode
    st.sink.mode = "ok"
    port = st.sink.port
    st.sink.stop()
    assert_deferred(st.send(original))
    # infected mail, next hop down: no quarantine loss either (quarantine is idempotent on retry)
    assert_deferred(st.send(eicar_mail("EICAR")))
    assert st.spool_files() == []
    st.sink = Sink(port=port).start()
    replies = st.send(original)
    assert replies[BOB][0] == 250
    (copy,) = st.sink.deliveries()
    assert body_of(copy.data) == body_of(original), "intact when retried"
    assert "next hop" in st.log_text() or "ForwardMailer" in st.log_text()


def test_smtp_all_or_nothing_lmtp_per_recipient(make_stack) -> None:  # noqa: ANN001
    st = make_stack(GROUP)
    st.sink.fail_rcpts = {"carol@example.com"}
    data = mail("two")
    replies = st.send(data, rcpts=[BOB, "carol@example.com"])
    assert_deferred(replies)
    assert st.sink.got == [], "SMTP has one answer: nobody gets a half-delivered message"
    st2 = make_stack(GROUP, general={"Protocol": "lmtp"})
    st2.sink.fail_rcpts = {"carol@example.com"}
    replies = st2.send(data, rcpts=[BOB, "carol@example.com"], lmtp=True)
    assert replies[BOB][0] == 250 and 400 <= replies["carol@example.com"][0] < 500
    (copy,) = st2.sink.deliveries()
    assert copy.rcpts == [BOB]


def test_size_limit_is_temporary(make_stack) -> None:  # noqa: ANN001
    st = make_stack(GROUP, extra={"smtpscan.limits": {"MaxMessageSize": 5000}})
    import smtplib

    with smtplib.SMTP("127.0.0.1", st.port) as c:
        c.ehlo()
        assert c.has_extn("size") and c.esmtp_features["size"] == "5000"
        code, _ = c.mail("alice@example.com", ["SIZE=9000"])
        assert code == 452
    replies = st.send(mail("big", {"big.bin": b"x" * 20000}))
    assert_deferred(replies)
    assert st.sink.got == [] and st.spool_files() == []
    assert EICAR  # the family is exercised elsewhere
