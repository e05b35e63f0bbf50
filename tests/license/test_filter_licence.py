"""Licence accounting and notices through the real filter (guide 5.4.1).

Real aveserver, real pre-forked smtpscanner, a real SMTP sink as next hop and admin mailbox, and
the real ``licensemanager`` reading what the filter counted.
"""

from __future__ import annotations

import smtplib
import threading
import time
from pathlib import Path

import pytest

from tests.support.filter import EICAR, Stack, _kill, mail
from tests.support.license import Publisher, licence_paths, licensemanager
from tests.support.procs import children, wait_for

ADMIN = "admin@example.com"
DOMAINS = r"@example\.com$,@example\.net$"  # the guide's escaping: '.' written '\.'


def licensed_stack(make_stack, root_keys: Path, processes: int = 1, **extra_sections: dict) -> Stack:  # noqa: ANN001
    extra = {"path": licence_paths(root_keys), "smtpscan.license": {"LicenseDomains": DOMAINS}, **extra_sections}
    st = make_stack({"default": {"AdminAddress": ADMIN}}, extra=extra, start=False)
    if processes > 1:
        st.scanner_args = ("--processes", str(processes))
    return st


def install(conf: Path, pub: Publisher, tmp: Path, **kw: object) -> None:
    f = tmp / f"{kw.get('serial', 'k')}.keyfile"
    f.write_bytes(pub.key(**kw))  # type: ignore[arg-type]
    r = licensemanager(conf, "-a", str(f))
    assert r.returncode == 0, r.stderr


def info(conf: Path) -> dict[str, str]:
    r = licensemanager(conf, "-i")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    out = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ":" in ln)}
    i = lines.index("Daily traffic statistic(Bytes):")
    out["hourly"] = lines[i + 1]
    return out


def licence_notices(st: Stack, event: str) -> list:
    return [g for g in st.sink.got if g.notice == f"admin; {event}" and g.rcpts == [ADMIN]]


def as_scanned(data: bytes) -> int:
    """The size the filter counts: the message as scanned, line ends LF."""
    return len(data.replace(b"\r\n", b"\n"))


def kill_scanner(st: Stack) -> None:
    assert st.scanner is not None
    for pid in children(st.scanner.pid):
        _kill(pid)
    _kill(st.scanner.pid)
    st.scanner.wait()


@pytest.mark.slow
def test_thousand_messages_ten_sessions_kill9_counts_exactly_the_clean(make_stack, tmp_path: Path) -> None:  # noqa: ANN001
    keys = tmp_path / "lic"
    pub = Publisher.create(keys)
    st = licensed_stack(make_stack, keys, processes=2)
    install(st.conf, pub, tmp_path, ktype="users", units=500, serial="0038-000419-0003D3EA")
    install(st.conf, pub, tmp_path, ktype="traffic", units=100, serial="011E-000413-0003E3E8")
    st.start()

    # 1000 messages: 10 sessions x 100; every 7th infected (from/to addresses used by nothing clean)
    plan: list[list[tuple[str, list[str], bytes, bool]]] = [[] for _ in range(10)]
    for n in range(1000):
        s = n % 10
        if n % 7 == 3:
            sender, rcpts = f"virus{n}@example.com", [f"victim{n}@example.net"]
            data = mail(f"bad {n}", {"eicar.com": EICAR}, sender=sender, to=rcpts[0])
            plan[s].append((sender, rcpts, data, False))
            continue
        sender = f"user{n % 37}@example.com" if n % 3 else f"outsider{n % 11}@other.org"
        rcpts = [f"rcpt{n % 53}@example.net", f"ext{n % 5}@elsewhere.org"][: 1 + n % 2]
        data = mail(f"clean {n}", {"a.txt": b"x" * (n * 13 % 4000)}, sender=sender, to=rcpts[0])
        plan[s].append((sender, rcpts, data, True))

    accepted: list[tuple[str, list[str], bytes, bool]] = []
    lock = threading.Lock()
    progress = [0]

    def session(items: list[tuple[str, list[str], bytes, bool]]) -> None:
        client: smtplib.SMTP | None = None
        for sender, rcpts, data, clean in items:
            deadline = time.monotonic() + 120
            while True:  # like an MTA: anything but 250 means "keep it and try again"
                try:
                    if client is None:
                        client = smtplib.SMTP("127.0.0.1", st.port, timeout=60)
                        client.ehlo()
                    refused = client.sendmail(sender, rcpts, data)
                    assert not refused
                    break
                except (smtplib.SMTPException, OSError):
                    if client is not None:
                        try:
                            client.close()
                        except OSError:
                            pass
                    client = None
                    assert time.monotonic() < deadline, "message never accepted"
                    time.sleep(0.2)
            with lock:
                accepted.append((sender, rcpts, data, clean))
                progress[0] += 1
        if client is not None:
            client.quit()

    threads = [threading.Thread(target=session, args=(items,)) for items in plan]
    for t in threads:
        t.start()
    wait_for(lambda: progress[0] >= 400, timeout=300, what="400 messages")
    kill_scanner(st)  # kill -9 the supervisor and its workers in the middle of the run
    killed_at = progress[0]
    st.start_scanner()
    for t in threads:
        t.join(300)
    assert len(accepted) == 1000 and 400 <= killed_at < 1000

    clean = [a for a in accepted if a[3]]
    domains = ("@example.com", "@example.net")
    want_users = {addr for sender, rcpts, _, _ in clean for addr in [sender, *rcpts] if addr.endswith(domains)}
    want_bytes = sum(as_scanned(d) for _, _, d, _ in clean)
    got = info(st.conf)
    assert int(got["Users units used"]) == len(want_users)
    assert int(got["Users units left"]) == 500 - len(want_users)
    assert sum(int(b) for b in got["hourly"].split(",")) == want_bytes
    # the sink saw every clean message at least once (a retried one possibly twice); counted once
    delivered_subjects = {g.msg["Subject"] for g in st.sink.deliveries() if str(g.msg["Subject"]).startswith("clean")}
    assert len(delivered_subjects) == len(clean)
    # only counts are shown; root may list the addresses
    r = licensemanager(st.conf, "--users")
    assert r.returncode == 0 and f"{len(want_users)} licensed users" in r.stdout
    listed = {ln.split("\t")[0] for ln in r.stdout.splitlines() if "\t" in ln}
    assert listed == want_users
    # restart: the counts are kept
    st.restart_scanner()
    assert info(st.conf)["Users units used"] == str(len(want_users))


@pytest.mark.parametrize("processes", [1, 3])
def test_expiry_in_13_days_notice_at_start_once_a_day_and_after_restart(make_stack, tmp_path: Path,  # noqa: ANN001
                                                                        processes: int) -> None:
    """With pre-forked workers too: one start of the filter is one notice, not one per worker."""
    keys = tmp_path / "lic"
    pub = Publisher.create(keys)
    st = licensed_stack(make_stack, keys, processes=processes)
    install(st.conf, pub, tmp_path, ktype="users", units=50, days=13)
    st.start()
    wait_for(lambda: len(licence_notices(st, "licence-expiring")) == 1, what="expiry notice at start")
    time.sleep(0.5)  # the other workers have started too
    (notice,) = licence_notices(st, "licence-expiring")
    body = notice.msg.get_payload(decode=True).decode()
    assert "0038-000419-0003D3EA" in body and "in 13 days" in body
    assert notice.sender == ""  # null envelope sender, like the virus notices
    assert "expires in 13 days" in " ".join(str(notice.msg["Subject"]).split())  # header may be folded
    for n in range(2):  # messages within the 24 hours: no further notice
        assert st.send(mail(f"clean {n}"), sender="a@example.com", rcpts=["b@example.com"])["b@example.com"][0] == 250
    assert len(licence_notices(st, "licence-expiring")) == 1
    st.restart_scanner()
    wait_for(lambda: len(licence_notices(st, "licence-expiring")) == 2, what="expiry notice after restart")
    assert st.send(mail("clean 3"), sender="a@example.com", rcpts=["b@example.com"])["b@example.com"][0] == 250
    assert len(licence_notices(st, "licence-expiring")) == 2
    # key information logged at start (5.4.2) by smtpscanner and aveserver
    key_line = "License file 0003D3EA.key, serial 0038-000419-0003D3EA"
    assert key_line in st.log_text()
    assert key_line in (st.root / "log" / "aveserver.log").read_text()


def test_expired_key_notice_at_start_and_mail_still_flows(make_stack, tmp_path: Path) -> None:  # noqa: ANN001
    keys = tmp_path / "lic"
    pub = Publisher.create(keys)
    st = licensed_stack(make_stack, keys)
    (keys / "licenses").mkdir()
    # a key that was installed while valid and has expired since (-a refuses expired keys)
    (keys / "licenses" / "0003D3EA.key").write_bytes(pub.key(start_days=-400, days=-1))
    st.start()
    wait_for(lambda: len(licence_notices(st, "licence-expired")) == 1, what="expired notice at start")
    rc = ["b@example.com"]
    assert st.send(mail("after expiry"), sender="a@example.com", rcpts=rc)[rc[0]][0] == 250  # 5.4: scanning goes on
    assert st.send(mail("bad", {"e.com": EICAR}), sender="a@example.com", rcpts=rc)[rc[0]][0] == 250
    assert len(st.sink.deliveries()) == 2
    assert len(licence_notices(st, "licence-expired")) == 1
    body = licence_notices(st, "licence-expired")[0].msg.get_payload(decode=True).decode()
    assert "expired on" in body and "scanning goes on" in body.replace("\n", " ")


def test_over_110_percent_a_notice_per_non_clean_message(make_stack, tmp_path: Path) -> None:  # noqa: ANN001
    keys = tmp_path / "lic"
    pub = Publisher.create(keys)
    st = licensed_stack(make_stack, keys)
    install(st.conf, pub, tmp_path, ktype="traffic", units=1, serial="011E-000413-0003E3E8")
    st.start()
    def big() -> bytes:  # ~680 kB, a new Message-ID each time (a resent identical message counts once)
        return mail("clean big", {"big.txt": b"0123456789abcdef\n" * 40000})

    rc = ["b@example.com"]
    assert st.send(big(), sender="a@example.com", rcpts=rc)["b@example.com"][0] == 250
    assert licence_notices(st, "licence-exceeded") == []  # 65 %: nothing yet
    assert st.send(mail("bad 0", {"e.com": EICAR}), sender="a@example.com", rcpts=rc)["b@example.com"][0] == 250
    assert licence_notices(st, "licence-overlimit") == []  # not above 110 % yet
    assert st.send(big(), sender="a@example.com", rcpts=rc)["b@example.com"][0] == 250  # 130 %
    assert len(licence_notices(st, "licence-exceeded")) == 1
    for n in range(3):
        assert st.send(mail(f"bad {n + 1}", {"e.com": EICAR}), sender="v@example.com", rcpts=rc)[rc[0]][0] == 250
    over = licence_notices(st, "licence-overlimit")
    assert len(over) == 3
    bodies = [g.msg.get_payload(decode=True).decode() for g in over]
    assert all("more than 10 %" in b and "EICAR" in b.upper() for b in bodies)
    assert [s for b in bodies for s in ("bad 1", "bad 2", "bad 3") if s in b] == ["bad 1", "bad 2", "bad 3"]
    assert st.send(mail("clean small"), sender="a@example.com", rcpts=rc)[rc[0]][0] == 250
    assert len(licence_notices(st, "licence-overlimit")) == 3  # Clean messages bring none
    assert len(licence_notices(st, "licence-exceeded")) == 1  # once in 24 hours
    got = info(st.conf)
    assert got["License traffic units"] == "1 (MB)" and got["Traffic units left"] == "0 (MB)"


def test_no_key_no_accounting_mail_flows(make_stack, tmp_path: Path) -> None:  # noqa: ANN001
    keys = tmp_path / "lic"
    st = licensed_stack(make_stack, keys)
    st.start()
    assert st.send(mail("clean"), sender="a@example.com", rcpts=["b@example.com"])["b@example.com"][0] == 250
    assert not (keys / "licensing").exists()
    assert "no product key installed" in st.log_text()
