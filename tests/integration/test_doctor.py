"""``kavsetup doctor`` on fixture roots (Debian's own main.cf/master.cf, integrated by the real
``kavsetup install``) for the links a file can break, and against the real aveserver, smtpscanner
and an SMTP sink (tests/support/filter.py) for the links a daemon breaks.  The whole path through
a running Postfix is the matrix's ``doctor`` scenario (tests/distro-matrix)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from kavsetup import postfix_cf as pcf
from kavsetup.doctor import check_aveserver, check_database, check_reinjection
from kavsetup.integrate.files import Root
from runtime.config import load_config
from tests.support.filter import Sink, Stack
from tests.support.integration import kav, make_root

pytestmark = pytest.mark.root

MTA = ("--mta", "postfix", "--mta-config", "/etc/postfix/main.cf")
CONF = "etc/kav/5.5/kav4mailservers/kav4mailservers.conf"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    try:
        from tests.support.debian_pkgs import PackageUnavailable, extract
        tree = extract("postfix", suite="bookworm")
    except (ImportError, PackageUnavailable) as exc:
        pytest.skip(f"Debian's postfix package is unavailable: {exc}")
    share = tree / "usr" / "share" / "postfix"
    r = make_root(tmp_path, {"/etc/postfix/main.cf": share / "main.cf.debian",
                             "/etc/postfix/master.cf": share / "master.cf.dist"})
    rc, out = kav("install", "--root", str(r), *MTA, "--non-interactive")
    assert rc == 0, out
    return r


def doctor(root: Path, *extra: str) -> tuple[int, dict]:
    rc, out = kav("doctor", "--root", str(root), *MTA, "--json", *extra)
    return rc, json.loads(out)


def link(report: dict, name: str) -> dict:
    return next(lk for lk in report["links"] if lk["name"] == name)


def test_integrated_root_passes_the_static_links_but_is_not_proven(root: Path) -> None:
    rc, rep = doctor(root, "--static")
    assert rc == 2 and rep["stopped_at"] is None and not rep["ok"]
    assert link(rep, "config")["ok"] and link(rep, "content_filter")["ok"]
    assert link(rep, "delivery")["ok"] is None


def test_content_filter_missing_is_named_with_the_fix(root: Path) -> None:
    main = root / "etc/postfix/main.cf"
    text = main.read_text()
    entry = pcf.last_param(text, "content_filter")
    assert entry is not None
    main.write_text(pcf.remove_span(text, entry))
    rc, rep = doctor(root, "--static")
    assert rc == 1 and rep["stopped_at"] == "content_filter"
    cf = link(rep, "content_filter")
    assert "content_filter missing" in cf["detail"] and "kavsetup install" in cf["fix"]
    rc, out = kav("doctor", "--root", str(root), *MTA, "--static")
    assert rc == 1 and "stopped at: content_filter" in out and "fix: kavsetup install" in out


def test_another_filter_in_place_is_named(root: Path) -> None:
    main = root / "etc/postfix/main.cf"
    main.write_text(pcf.set_param(main.read_text(), "content_filter", "amavis:[127.0.0.1]:10024"))
    rc, rep = doctor(root, "--static")
    assert rc == 1 and rep["stopped_at"] == "content_filter"
    assert "amavis:[127.0.0.1]:10024" in link(rep, "content_filter")["detail"]
    assert "--chain" in link(rep, "content_filter")["fix"]


def test_transport_service_missing_from_master_cf(root: Path) -> None:
    master = root / "etc/postfix/master.cf"
    text = master.read_text()
    entry = pcf.find_service(text, "kavscan/unix")
    assert entry is not None
    master.write_text(pcf.remove_span(text, entry))
    rc, rep = doctor(root, "--static")
    assert rc == 1 and "no 'kavscan unix' service" in link(rep, "content_filter")["detail"]


def test_proxy_form_is_recognised_and_another_before_queue_filter_is_not(tmp_path: Path, root: Path) -> None:
    """The before-queue form leaves main.cf alone: the link is the smtpd services' smtpd_proxy_filter
    at the address our pickup's content_filter names; someone else's proxy filter is not ours."""
    assert kav("uninstall", "--root", str(root))[0] == 0
    answers = tmp_path / "answers.yaml"
    answers.write_text("postfix_mode: proxy\n")
    rc, out = kav("install", "--root", str(root), *MTA, "--non-interactive", "--answers", str(answers))
    assert rc == 0, out
    rc, rep = doctor(root, "--static")
    cf = link(rep, "content_filter")
    assert cf["ok"] and "smtpd_proxy_filter=127.0.0.1:10025 on smtp/inet" in cf["detail"], cf
    master = root / "etc/postfix/master.cf"
    master.write_text(master.read_text().replace("proxy_filter=127.0.0.1:10025", "proxy_filter=127.0.0.1:10099"))
    rc, rep = doctor(root, "--static")
    assert rc == 1 and rep["stopped_at"] == "content_filter", rep


def test_filter_config_invalid_names_file_line_and_key(root: Path) -> None:
    conf = root / CONF
    conf.write_text(conf.read_text() + "\n[smtpscan.general]\nNoSuchKey=1\n")
    rc, rep = doctor(root, "--static")
    assert rc == 1 and rep["stopped_at"] == "config"
    cfg = link(rep, "config")
    assert "filter configuration invalid" in cfg["detail"] and "NoSuchKey" in cfg["detail"]
    assert "kavsetup config check" in cfg["fix"]


def test_mta_not_running_stops_the_live_walk_before_any_mail_is_sent(root: Path) -> None:
    rc, rep = doctor(root, "--timeout", "1")
    assert rc == 1 and rep["stopped_at"] == "mta"
    assert "MTA not running" in link(rep, "mta")["detail"] and link(rep, "mta")["fix"] == "systemctl start postfix"
    assert link(rep, "delivery")["ok"] is None  # nothing was submitted


def test_daemon_links_against_the_real_aveserver_and_a_sink(tmp_path: Path) -> None:
    sink = Sink().start()
    stack = Stack(tmp_path / "kav", sink)
    stack.write({"default": {"Recipients": ".*"}})
    old = time.time() - 30 * 86400
    for f in (tmp_path / "kav" / "bases").iterdir():
        os.utime(f, (old, old))
    stack.start()
    live = Root("/")
    try:
        cfg = load_config(str(stack.conf))
        ave, info = check_aveserver(live, cfg)
        assert ave.ok, ave.detail
        assert info is not None
        fresh = check_database(info, max_age_days=60)
        assert fresh.ok and "EICAR" in fresh.detail.upper(), fresh.detail
        stale = check_database(info, max_age_days=7)
        assert stale.ok is False and "database old" in stale.detail and "keepup2date" in stale.fix
        assert check_reinjection(cfg).ok
        sink.stop()
        refused = check_reinjection(cfg)
        assert refused.ok is False and "reinjection refused" in refused.detail
        stack.kill_ave()
        down, _ = check_aveserver(live, cfg)
        assert down.ok is False and "aveserver down" in down.detail and "kav4mailservers-aveserver" in down.fix
    finally:
        stack.stop()
        sink.stop()


def test_eicar_is_found_in_a_base64_attachment_and_not_in_a_notice() -> None:
    from kavsetup.doctor import carries_eicar, eicar_message

    sent = eicar_message("abc", "alice@localhost")
    assert EICAR_TEXT not in sent and carries_eicar(sent)  # base64 on the wire
    assert b"\n" not in sent.replace(b"\r\n", b"")  # CRLF only: Sendmail refuses a bare LF
    assert not carries_eicar(b"Subject: notice abc\n\nThe attachment eicar.com was infected and removed.\n")


EICAR_TEXT = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"


@pytest.fixture
def exim_root(tmp_path: Path) -> Path:
    try:
        from tests.support.debian_pkgs import PackageUnavailable, extract
        d = extract("exim4-config", suite="bookworm") / "etc" / "exim4"
    except (ImportError, PackageUnavailable) as exc:
        pytest.skip(f"Debian's exim4-config package is unavailable: {exc}")
    r = make_root(tmp_path, {f"/etc/exim4/{f.relative_to(d)}": f for f in d.rglob("*") if f.is_file()})
    rc, out = kav("install", "--root", str(r), *EXIM, "--non-interactive")
    assert rc == 0, out
    return r


EXIM = ("--mta", "exim", "--mta-config", "/etc/exim4/exim4.conf.template")


def test_exim_listening_configuration_is_the_content_filter_link(exim_root: Path) -> None:
    rc, out = kav("doctor", "--root", str(exim_root), *EXIM, "--json", "--static")
    rep = json.loads(out)
    assert rc == 2 and link(rep, "content_filter")["ok"], rep
    assert "kav_lmtp_transport" in link(rep, "content_filter")["detail"]
    assert link(rep, "transport")["ok"] is None  # nothing listens: Exim spawns smtpscanner
    rc, out = kav("doctor", "--root", str(exim_root), *EXIM, "--json", "--timeout", "1")
    rep = json.loads(out)
    assert rc == 1 and rep["stopped_at"] == "mta" and "kav4ms-exim-listen" in link(rep, "mta")["fix"]
    listen = sorted((exim_root / "etc/exim4").glob("*.listen"))
    assert len(listen) == 1, listen
    listen[0].unlink()
    rc, out = kav("doctor", "--root", str(exim_root), *EXIM, "--json", "--static")
    rep = json.loads(out)
    assert rc == 1 and rep["stopped_at"] == "content_filter"
    assert "content_filter missing" in link(rep, "content_filter")["detail"]


def test_sendmail_listening_configuration_is_the_content_filter_link(tmp_path: Path) -> None:
    """Debian's sendmail.cf made by m4 from Debian's sendmail.mc (tests/fixtures/roots),
    integrated by the real install."""
    try:
        from tests.support.fixture_roots import build
        full = build("debian-12-sendmail", tmp_path / "full")
    except Exception as exc:  # noqa: BLE001 - the packages may be unavailable offline
        pytest.skip(f"debian-12-sendmail fixture root unavailable: {exc}")
    # its configuration only (the unpacked binary cannot run chrooted without its libraries)
    mail = full / "etc" / "mail"
    root = make_root(tmp_path / "cfg", {f"/etc/mail/{f.name}": f for f in mail.iterdir()
                                         if f.is_file() and not f.is_symlink()})
    rc, out = kav("install", "--root", str(root), "--non-interactive", "--mta", "sendmail",
                  "--mta-config", "/etc/mail/sendmail.cf")
    assert rc == 0, out
    sm = ("--mta", "sendmail", "--mta-config", "/etc/mail/sendmail.cf")
    rc, out = kav("doctor", "--root", str(root), *sm, "--json", "--static")
    rep = json.loads(out)
    assert rc == 2 and link(rep, "content_filter")["ok"], rep
    rc, out = kav("doctor", "--root", str(root), *sm, "--json", "--timeout", "1")
    rep = json.loads(out)
    assert rc == 1 and rep["stopped_at"] == "mta" and "kav4ms-sendmail-listen" in link(rep, "mta")["fix"]
    cf = root / "etc/mail/sendmail.cf.listen"
    cf.write_text(cf.read_text().replace("$#smtpscanner", "$#local"))
    rc, out = kav("doctor", "--root", str(root), *sm, "--json", "--static")
    rep = json.loads(out)
    assert rc == 1 and rep["stopped_at"] == "content_filter"
    assert "ParseLocal rule" in link(rep, "content_filter")["detail"]


def test_mailbox_watch_reads_only_what_arrived_after_start(tmp_path: Path) -> None:
    from kavsetup.doctor import MailboxWatch

    root = make_root(tmp_path, {"/var/mail/root": "From a@b Mon Jan  1 00:00:00 2024\nSubject: old tok\n\nold\n"})
    (root / "root" / "Maildir" / "new").mkdir(parents=True)
    (root / "root" / "Maildir" / "cur").mkdir()
    (root / "root" / "Maildir" / "cur" / "1.old:2,S").write_bytes(b"Subject: old tok\n\n")
    watch = MailboxWatch(Root(root), "root")
    watch.start()
    assert watch.new_messages() == []
    with open(root / "var/mail/root", "ab") as fh:
        fh.write(b"From x@y Mon Jan  1 00:00:01 2024\nSubject: new tok\n\nbody\n\n"
                 b"From x@y Mon Jan  1 00:00:02 2024\nSubject: other\n\nbody\n")
    (root / "root" / "Maildir" / "new" / "2.new").write_bytes(b"Subject: maildir tok\n\n")
    got = watch.new_messages()
    assert len(got) == 3 and sum(b"tok" in m for m in got) == 2 and not any(b"old" in m for m in got)
