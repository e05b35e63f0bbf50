"""Big mail (issue 20): a 50 MB message with a 35 MB attachment passes through smtpscanner and
arrives intact. Memory and time are measured by ``python -m bench.mta.bigmail``, not asserted here."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import random
import smtplib

BOB = "bob@example.com"


def big_message(attachment: bytes) -> bytes:
    head = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"
            b"A big attachment follows.\r\n\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    return head + base64.encodebytes(attachment).replace(b"\n", b"\r\n") + b"\r\n--b1--\r\n"


def test_fifty_megabyte_message_is_delivered_intact(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {"AdminAddress": "admin@example.com"}})
    attachment = random.Random(20).randbytes(35_000_000)
    data = big_message(attachment)
    assert 45_000_000 < len(data) < 52_428_800  # ~50 MB, under the default MaxMessageSize (50 MiB)
    with smtplib.SMTP("127.0.0.1", st.port, timeout=600) as c:
        refused = c.sendmail("alice@example.com", [BOB], data)
    assert refused == {}
    (got,) = st.sink.deliveries()
    msg = email.message_from_bytes(got.data, policy=email.policy.compat32)
    parts = [p for p in msg.walk() if p.get_filename() == "big.bin"]
    assert len(parts) == 1
    payload = parts[0].get_payload(decode=True)
    assert hashlib.sha256(payload).hexdigest() == hashlib.sha256(attachment).hexdigest()
    assert msg["X-Anti-Virus"], "the message was scanned (header added), not passed around the filter"
