"""Guide 6.5 end to end with real parts: an EICAR mail in a remote POP3 mailbox (Debian's
dovecot) is collected by Debian's fetchmail using the ``.fetchmailrc`` that ``kavsetup pop3 add``
wrote, handed to 127.0.0.1:25 where the real smtpscanner (with aveserver) listens, and arrives
scanned: not as sent, with the recipient's notice; the clean one arrives with ``X-Anti-Virus``.
All inside a network namespace of its own (tests/support/pop3.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support.pop3 import REMOTE_USER, run_in_namespace, tools_missing

pytestmark = pytest.mark.skipif(bool(tools_missing()), reason=tools_missing() or "ok")


def test_eicar_in_a_remote_pop3_mailbox_arrives_scanned() -> None:
    base = Path(tempfile.mkdtemp(prefix="kav4ms-pop3-", dir="/tmp"))
    os.chmod(base, 0o711)  # noqa: S103 - fetchmail runs as nobody, dovecot's login as dovenull
    try:
        r = run_in_namespace(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert r["add"] == 0, r
    assert r["fetchmail"] == 0, r["fetchmail_out"]
    assert f"2 messages for {REMOTE_USER} at 127.0.0.1" in r["fetchmail_out"]
    got = r["got"]
    assert not any(g["eicar"] for g in got), got  # EICAR never reaches the local mailbox as sent
    clean = [g for g in got if g["subject"] == "pop3 clean"]
    assert len(clean) == 1 and clean[0]["x_anti_virus"] and not clean[0]["notice"], got
    notices = [g for g in got if g["notice"]]
    assert notices, got
    assert r["left_remote"] == [], "fetchmail deletes what it collected"
    assert "EICAR" in r["scanner_log"] or "eicar" in r["scanner_log"].lower()
