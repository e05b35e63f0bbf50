"""Block, not only clean (issue 19 item 4; our extension beyond the guide, docs/smtpscanner.md
'Block'): RecipientAction=discard and RecipientAction=reject through the real filter (real
aveserver, real smtpscanner, a real SMTP sink as the next hop and mailbox), and config check's
refusals."""

from __future__ import annotations

import email
import os
import smtplib
import subprocess
import sys

from tests.support.filter import EICAR, REPO, eicar_mail, mail

BOB = "bob@example.com"


def _quarantine(st, *args: str) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "runtime.filter.main", "-c", str(st.conf), "quarantine", *args],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=30)


def _check(st) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "kavsetup.cli", "config", "check", str(st.conf)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)


def test_discard_leaves_only_the_notice_and_quarantines_the_original(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, start=False)
    st.write({"default": {"QuarantinePath": st.quarantine, "Quarantine": True, "InfectedQuarantine": True,
                          "InfectedRecipientAction": "discard", "RecipientNotify": True, "AdminNotify": False}})
    assert _check(st).returncode == 0, _check(st).stderr
    st.start()

    replies = st.send(eicar_mail("EICAR", subject="discard me"))
    assert replies[BOB][0] == 250, replies  # the MTA is done with it: nothing to retry, nothing to bounce
    assert st.sink.deliveries() == [], "the recipient must get no copy of the message"
    (notice,) = st.sink.by_notice("recipient")
    assert notice.rcpts == [BOB] and notice.sender == ""
    assert "infected" in notice.notice
    text = b"".join(p.get_payload(decode=True) or b"" for p in notice.msg.walk())
    assert EICAR not in text and b"message not delivered" in text  # %ACTION% of the notice
    listing = _quarantine(st, "list").stdout.strip().splitlines()
    assert len(listing) == 1 and "discard me" in listing[0], listing
    raw = _quarantine(st, "show", "--raw", listing[0].split()[0]).stdout.encode()
    assert EICAR in b"".join(p.get_payload(decode=True) or b"" for p in email.message_from_bytes(raw).walk())
    assert "recipient copy: message not delivered" in st.log_text()

    # Other statuses keep the guide's actions, and clean mail still flows.
    st.sink.got.clear()
    assert st.send(eicar_mail("SUSP"))[BOB][0] == 250
    (copy,) = st.sink.deliveries()
    assert b"was removed from this message" in copy.data.replace(b"\r\n", b"\n")
    st.sink.got.clear()
    assert st.send(mail("clean one"))[BOB][0] == 250
    assert len(st.sink.deliveries()) == 1


def test_discard_without_a_kept_copy_is_refused_unless_allow_loss(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, start=False)
    st.write({"default": {"RecipientAction": "discard", "AdminNotify": False}})
    res = _check(st)
    assert res.returncode == 1
    assert "RecipientAction: discard (for Infected" in res.stderr and "DiscardAllowLoss=yes" in res.stderr
    assert str(st.conf) in res.stderr.splitlines()[0]  # FILE:LINE: [section] Key: ...
    # The admin copy keeps the original: allowed.
    st.write({"default": {"RecipientAction": "discard", "AdminNotify": True, "AdminAddress": "av@example.com"}})
    assert _check(st).returncode == 0, _check(st).stderr
    # The admin says loss is fine: allowed, and the message really is gone but for the notice.
    st.write({"default": {"InfectedRecipientAction": "discard", "AdminNotify": False, "DiscardAllowLoss": True}})
    assert _check(st).returncode == 0, _check(st).stderr
    st.start()
    assert st.send(eicar_mail("EICAR"))[BOB][0] == 250
    assert st.sink.deliveries() == [] and len(st.sink.by_notice("recipient")) == 1


def test_reject_needs_a_before_queue_smtp_filter(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, start=False)
    st.write({"default": {"InfectedRecipientAction": "reject"}})
    res = _check(st)
    assert res.returncode == 1 and "needs a before-queue SMTP filter" in res.stderr, res.stderr
    st.write({"default": {"InfectedRecipientAction": "reject"}}, general={"BeforeQueue": True, "Protocol": "lmtp"})
    assert _check(st).returncode == 1
    st.write({"default": {"InfectedRecipientAction": "reject"}}, general={"BeforeQueue": True})
    assert _check(st).returncode == 0, _check(st).stderr


def test_reject_answers_5xx_at_the_end_of_data(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, start=False)
    st.write({"default": {"QuarantinePath": st.quarantine, "Quarantine": True, "InfectedQuarantine": True,
                          "InfectedRecipientAction": "reject", "RecipientNotify": True,
                          "AdminNotify": True, "AdminAddress": "av@example.com"}},
             general={"BeforeQueue": True})
    st.start()
    with smtplib.SMTP("127.0.0.1", st.port, timeout=60) as c:
        c.ehlo()
        assert c.mail("alice@example.com")[0] == 250
        assert c.rcpt(BOB)[0] == 250
        code, text = c.data(eicar_mail("EICAR", subject="reject me"))  # the reply to the final dot
        assert code == 550 and b"5.7.1" in text and b"EICAR" in text, (code, text)
        # The session goes on: the next (clean) message is accepted and delivered.
        assert c.mail("alice@example.com")[0] == 250
        assert c.rcpt(BOB)[0] == 250
        assert c.data(mail("after the reject"))[0] == 250
    (delivered,) = st.sink.deliveries()
    assert b"after the reject" in delivered.data
    assert [g.rcpts for g in st.sink.by_notice("admin")] == [["av@example.com"]]
    assert st.sink.by_notice("recipient") == [], "a refused message was never the recipient's"
    assert len(_quarantine(st, "list").stdout.strip().splitlines()) == 1
    assert "rejected (5xx)" in st.log_text()
