"""smtpscanner spools DATA as it arrives and sends unchanged copies from the spool (issue 20):
the streaming steps give exactly the bytes of the in-memory rules they replace, and nothing is
left in TempPath whatever the outcome."""

from __future__ import annotations

import random

from runtime.filter.forward import DotStuffer, dot_stuff
from runtime.filter.spool import DataSpooler, Spool

PIECES = [b".", b"\r", b"\n", b"a", b"\r\n", b"..", b"\r\n.\r"]


def in_memory(wire: bytes) -> tuple[bytes, bytes]:
    """The former rule: DATA up to CRLF.CRLF, unstuffed, then CRLF -> LF; and what followed."""
    if wire.startswith(b".\r\n"):
        return b"", wire[3:]
    i = wire.find(b"\r\n.\r\n")
    body, rest = wire[: i + 2], wire[i + 5:]
    if body.startswith(b".."):
        body = body[1:]
    return body.replace(b"\r\n..", b"\r\n.").replace(b"\r\n", b"\n"), rest


def test_data_spooler_gives_the_in_memory_bytes(tmp_path) -> None:  # noqa: ANN001
    rnd = random.Random(3)
    for _ in range(4000):
        body = b"".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 30)))
        if rnd.random() < 0.02:
            body = b"z" * 70000 + body  # a line longer than the carry limit
        wire = b".\r\nNEXT" if rnd.random() < 0.05 else body + b"\r\n.\r\nNEXT"
        want = in_memory(wire)
        spool = Spool(str(tmp_path))
        try:
            spooler, pos, rest = DataSpooler(spool, 0), 0, None
            while rest is None:
                n = rnd.randint(1, 8) if len(wire) < 1000 else rnd.randint(1, 30000)
                rest = spooler.feed(wire[pos:pos + n])
                pos += n
            assert (spool.read(0, spool.size + 1), rest + wire[pos:]) == want, wire[-60:]
        finally:
            spool.close()
    assert list(tmp_path.iterdir()) == []


def test_data_spooler_counts_the_limit_and_keeps_reading(tmp_path) -> None:  # noqa: ANN001
    spool = Spool(str(tmp_path))
    spooler = DataSpooler(spool, 1000)
    assert spooler.feed(b"x" * 600 + b"\r\n") is None
    assert spooler.feed(b"y" * 600 + b"\r\n.\r\nQUIT\r\n") == b"QUIT\r\n"
    assert spooler.too_big and spool.size <= 1000
    spool.close()


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
