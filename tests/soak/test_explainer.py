"""The soak's explanation of a duplicate (bench/soak/run.py ``_explainer``): a message delivered
twice counts as explained only when the MTA's own log shows the hand-over to the filter broke
after the filter's reinjection had taken a copy. The lines below have the exact form Postfix 3.7
and Sendmail 8.17 wrote in soak runs (syslog time prefix as the sandbox's collector adds it)."""

from __future__ import annotations

import calendar
import time
from types import SimpleNamespace

from bench.soak.corpus import Spec
from bench.soak.run import _explainer

MID = "<soak-1-21@client.example.org>"
SPEC = Spec(21, "clean", "attachment", 256463, MID, "soak 21")
SENDMAIL = f"""\
00:49:28 <22>Dec  2 00:49:28 sendmail[285]: 6B20nQ24000285: from=<client1@client.example.org>, size=256463, class=0, nrcpts=1, msgid={MID}, proto=ESMTP, daemon=MTA-v4, relay=localhost [127.0.0.1]
00:49:31 <22>Dec  2 00:49:31 sendmail[648]: 6B20nUMT000648: from=<client1@client.example.org>, size=256787, class=0, nrcpts=1, msgid={MID}, proto=ESMTP, daemon=kav-reinject, relay=localhost [127.0.0.1]
00:49:31 <18>Dec  2 00:49:31 sendmail[465]: 6B20nQ24000285: SYSERR(root): mailer smtpscanner died with signal 9
00:49:31 <22>Dec  2 00:49:31 sendmail[465]: 6B20nQ24000285: to=<alice@mta.test>, delay=00:00:05, xdelay=00:00:03, mailer=smtpscanner, pri=286463, relay=smtpscanner, dsn=4.4.2, reply=451 4.4.1 reply: read error from smtpscanner, stat=Deferred
00:50:03 <22>Dec  2 00:50:03 sendmail[1940]: 6B20o2u6001940: from=<client1@client.example.org>, size=256787, class=0, nrcpts=1, msgid={MID}, proto=ESMTP, daemon=kav-reinject, relay=localhost [127.0.0.1]
00:50:03 <22>Dec  2 00:50:03 sendmail[1931]: 6B20nQ24000285: to=<alice@mta.test>, delay=00:00:37, xdelay=00:00:00, mailer=smtpscanner, pri=376463, relay=smtpscanner, dsn=2.0.0, stat=Sent
"""  # noqa: E501 - log lines as the MTA writes them
POSTFIX = f"""\
22:31:13 <22>Dec  1 22:31:13 postfix/cleanup[101]: 808842B62C7: message-id={MID}
22:31:14 <22>Dec  1 22:31:14 postfix/cleanup[102]: F2F062B62C3: message-id={MID}
22:31:14 <22>Dec  1 22:31:14 postfix/lmtp[103]: 808842B62C7: to=<alice@mta.test>, relay=127.0.0.1[127.0.0.1]:10025, delay=1.2, dsn=4.4.2, status=deferred (lost connection with 127.0.0.1[127.0.0.1] while sending end of data -- message may be sent more than once)
22:31:48 <22>Dec  1 22:31:48 postfix/cleanup[104]: A83862B62CC: message-id={MID}
"""  # noqa: E501 - log lines as the MTA writes them


def _chaos(*events: tuple[str, str]) -> SimpleNamespace:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    return SimpleNamespace(events=[
        SimpleNamespace(at=calendar.timegm(time.strptime(f"{today} {hms}", "%Y-%m-%d %H:%M:%S")), kind=kind, detail="")
        for hms, kind in events])


def test_sendmail_duplicate_after_the_spawned_filter_was_killed_is_explained() -> None:
    why = _explainer("sendmail", SENDMAIL, _chaos(("00:49:31", "smtpscanner")))(SPEC)
    assert "queued 6B20nQ24000285 (00:49:28), reinjected 6B20nUMT000648 (00:49:31)" in why
    assert "read error from smtpscanner" in why and "chaos then: smtpscanner" in why
    assert "reinjected again 6B20o2u6001940 (00:50:03)" in why


def test_postfix_duplicate_after_a_lost_connection_is_explained() -> None:
    why = _explainer("postfix", POSTFIX, _chaos(("22:31:14", "reinjection"), ("22:31:14", "smtpscanner")))(SPEC)
    assert "deferred at 22:31:14: lost connection" in why and "chaos then: reinjection, smtpscanner" in why


def test_no_broken_hand_over_no_explanation() -> None:
    """Two reinjected copies without a deferral of the client's queue file between them: the
    second copy has no cause in the log, which the soak must report, not excuse."""
    without = "\n".join(ln for ln in SENDMAIL.splitlines() if "stat=Deferred" not in ln)
    assert _explainer("sendmail", without, _chaos())(SPEC) == ""
    assert _explainer("exim4-split", SENDMAIL, _chaos())(SPEC) == ""
    one_copy = "\n".join(ln for ln in POSTFIX.splitlines() if "A83862B62CC" not in ln)
    assert _explainer("postfix", one_copy, _chaos())(SPEC) == ""
