"""smtpscanner spools DATA as it arrives and sends unchanged copies from the spool (issue 20):
the streaming steps give exactly the bytes of the in-memory rules they replace, and nothing is
left in TempPath whatever the outcome."""

from __future__ import annotations

import random

from runtime.filter.forward import DotStuffer, dot_stuff
from runtime.filter.spool import IN_MEMORY, DataSpooler

PIECES = [b".", b"\r", b"\n", b"a", b"\r\n", b"..", b"\r\n.\r"]


def in_memory(wire: bytes) -> tuple[bytes, bytes]:
    """The former rule: DATA up to CRLF.CRLF, unstuffed (CRLF kept); and what followed."""
    if wire.startswith(b".\r\n"):
        return b"", wire[3:]
    i = wire.find(b"\r\n.\r\n")
    body, rest = wire[: i + 2], wire[i + 5:]
    if body.startswith(b".."):
        body = body[1:]
    return body.replace(b"\r\n..", b"\r\n."), rest


def test_data_spooler_gives_the_in_memory_bytes(tmp_path) -> None:  # noqa: ANN001
    rnd = random.Random(3)
    for _ in range(4000):
        body = b"".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 30)))
        if rnd.random() < 0.02:
            body = b"z" * 70000 + body  # a line longer than the carry limit
        wire = b".\r\nNEXT" if rnd.random() < 0.05 else body + b"\r\n.\r\nNEXT"
        want_body, want_rest = in_memory(wire)
        # kept in memory as received / spooled from the start / switching to the spool midway
        spooler = DataSpooler(str(tmp_path), 0, in_memory=rnd.choice([None, 0, 10]))
        try:
            pos, rest = 0, None
            while rest is None:
                n = rnd.randint(1, 8) if len(wire) < 1000 else rnd.randint(1, 30000)
                rest = spooler.feed(wire[pos:pos + n])
                pos += n
            assert rest + wire[pos:] == want_rest
            if spooler.spool is None:
                assert b"".join(spooler.held) == want_body, wire[-60:]
            else:  # the spool holds LF line ends
                got = spooler.spool.read(0, spooler.spool.size + 1)
                assert got == want_body.replace(b"\r\n", b"\n"), wire[-60:]
        finally:
            spooler.discard()
    assert list(tmp_path.iterdir()) == []


def test_data_spooler_counts_the_limit_and_keeps_reading(tmp_path) -> None:  # noqa: ANN001
    spooler = DataSpooler(str(tmp_path), 1000, in_memory=100)
    assert spooler.feed(b"x" * 600 + b"\r\n") is None
    assert spooler.feed(b"y" * 600 + b"\r\n.\r\nQUIT\r\n") == b"QUIT\r\n"
    assert spooler.too_big and spooler.spool is not None and spooler.spool.size <= 1000
    spooler.discard()
    assert list(tmp_path.iterdir()) == []


def test_small_mail_stays_in_memory_big_mail_goes_to_the_spool(tmp_path) -> None:  # noqa: ANN001
    small = DataSpooler(str(tmp_path), 0)
    assert small.feed(b"hello\r\n" * 1000 + b".\r\n") == b""
    assert small.spool is None and list(tmp_path.iterdir()) == []
    big = DataSpooler(str(tmp_path), 0)
    line = b"x" * 998 + b"\r\n"
    for _ in range(IN_MEMORY // len(line) + 2):
        assert big.feed(line) is None
    assert big.spool is not None and big.held == [] and len(list(tmp_path.iterdir())) == 1
    big.discard()


def test_dot_stuffer_gives_dot_stuff_bytes() -> None:
    rnd = random.Random(4)
    for _ in range(4000):
        data = b"".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 30)))
        if rnd.random() < 0.02:
            data += b"y" * 70000 + b"\r" + b"..."
        stuffer, out, pos = DotStuffer(), b"", 0
        while pos < len(data):
            n = rnd.randint(1, 8) if len(data) < 1000 else rnd.randint(1, 40000)
            out += stuffer.feed(data[pos:pos + n])
            pos += n
        assert out + stuffer.close() == dot_stuff(data), data[-60:]


def dotted_message(size: int) -> bytes:
    rnd = random.Random(5)
    lines = [b"From: alice@example.com", b"To: bob@example.com", b"Subject: dots", b""]
    total = 0
    while total < size:
        line = rnd.choice([b".", b"..", b".leading dot", b"plain text line", b"", b"x" * rnd.randint(1, 900)])
        lines.append(line)
        total += len(line) + 2
    return b"\r\n".join(lines) + b"\r\n"


def test_big_unchanged_copy_arrives_exactly_and_the_spool_is_emptied(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {"AddXHeaders": True}})
    data = dotted_message(3_000_000)  # several reads and several spool chunks, dots at every boundary
    replies = st.send(data)
    assert replies["bob@example.com"][0] == 250
    (got,) = st.sink.deliveries()
    head, _, body = got.data.partition(b"\r\n\r\n")
    assert head.startswith(b"X-Anti-Virus: ") and head.endswith(b"Subject: dots")
    assert body == data.partition(b"\r\n\r\n")[2]
    assert st.spool_files() == []


def test_spool_is_emptied_when_the_next_hop_refuses_or_vanishes(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}})
    for mode in ("tempfail_data", "drop_after_data"):
        st.sink.mode = mode
        replies = st.send(dotted_message(300_000))
        assert replies["bob@example.com"][0] == 451, mode  # never 250 before the next hop accepted
        assert st.sink.deliveries() == []
        assert st.spool_files() == [], mode
