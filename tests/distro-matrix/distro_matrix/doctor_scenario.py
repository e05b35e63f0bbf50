"""The ``doctor`` scenario (issue 19 item 3): `kavsetup doctor` inside the cell, with MTA, aveserver
and smtpscanner running as the ``clean`` scenario left them.

First the database: the package ships none, so doctor must say "database empty" (keepup2date);
with a 30-day-old one, "database old"; with a fresh one the whole path must work (exit 0: EICAR
went through Postfix, the filter and reinjection and arrived in alice's mailbox scanned).  Then
each link is broken on purpose, the diagnosis asserted (the link named, its fix), and the link
repaired before the next one, so later scenarios find the cell as it was:

    aveserver stopped           -> stopped_at aveserver, the test mail held with the MTA's reason
    (Postfix) smtpscanner stopped, or its master.cf spawn service commented out -> transport
    (Postfix) content_filter removed -> content_filter, EICAR arrives as sent (bypass named)
    (Exim, Sendmail) the listening configuration moved away -> content_filter
    ForwardMailer to a dead port-> stopped_at reinjection
    a bad key in the conf       -> stopped_at config, naming the key
    the MTA stopped             -> stopped_at mta, "systemctl start ..."
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from .spec import MAIL_USER

CONF = "/etc/kav/5.5/kav4mailservers/kav4mailservers.conf"
AVESERVER_UNIT = "kav4mailservers-aveserver.service"
SMTPSCANNER_UNIT = "kav4mailservers-smtpscanner.service"


def _doctor(cell: Any, *extra: str, timeout: str = "40") -> tuple[int, dict[str, Any]]:
    r = cell._sb().run(["kavsetup", "doctor", "--json", "--to", MAIL_USER, "--timeout", timeout, *extra],
                       timeout=180)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"kavsetup doctor printed no JSON (exit {r.returncode}): {r.stdout[-800:]}"
                             f"{r.stderr[-800:]}") from None


def _link(rep: dict[str, Any], name: str) -> dict[str, Any]:
    return next(lk for lk in rep["links"] if lk["name"] == name)


def _expect(rep: dict[str, Any], rc: int, at: str, detail: str, fix: str = "") -> str:
    lk = _link(rep, at)
    if rc != 1 or rep["stopped_at"] != at:
        got = _link(rep, rep["stopped_at"]) if rep.get("stopped_at") else None
        raise AssertionError(f"expected stopped_at {at}, got {rep['stopped_at']} (exit {rc}): {got}; {rep}")
    assert detail in lk["detail"], f"{at}: {lk['detail']!r} lacks {detail!r}"
    assert fix in lk["fix"], f"{at}: fix {lk['fix']!r} lacks {fix!r}"
    return f"{at}: {lk['detail'][:70]}"


#: Exit 1 while any aveserver process is left in the cell (its own pid excluded).
_AVE_LEFT = ("import os, sys\n"
             "def cmd(p):\n"
             "    try:\n        return open(f'/proc/{p}/cmdline', 'rb').read()\n"
             "    except OSError:\n        return b''\n"
             "me = str(os.getpid())\n"
             "sys.exit(any(b'aveserver' in cmd(p) for p in os.listdir('/proc') if p.isdigit() and p != me))\n")


def _stop_ave(cell: Any) -> None:
    """Stop aveserver and wait until its master is really gone: a master still exiting removes
    the socket path, which would take the next one's socket with it."""
    sb = cell._sb()
    cell._product_stop(AVESERVER_UNIT)  # the package's init script (postinst started it) or the unit
    deadline = time.monotonic() + 30
    while sb.run(["python3", "-c", _AVE_LEFT]).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.3)


def _restart_ave(cell: Any) -> None:
    sb = cell._sb()
    _stop_ave(cell)
    cell._product_start(AVESERVER_UNIT)
    deadline = time.monotonic() + 30
    while not sb.path("/run/aveserver").exists() and time.monotonic() < deadline:
        time.sleep(0.3)


def run(cell: Any) -> str:
    sb = cell._sb()
    if sb.run(["kavsetup", "doctor", "--help"]).returncode != 0:
        from .scenarios import Blocked
        raise Blocked("kavsetup doctor not in the package yet")
    seen: list[str] = []
    bases = json.loads(sb.run(["kavsetup", "config", "show", CONF, "--section", "path", "--json"]).stdout)
    db = sb.path(bases["path"]["BasesPath"]) / "doctor-matrix.ndb"
    rc, rep = _doctor(cell)
    if rep["stopped_at"] == "database":  # the package ships no database: keepup2date has not run yet
        seen.append(_expect(rep, rc, "database", "database empty", "keepup2date"))
        db.parent.mkdir(parents=True, exist_ok=True)
        db.write_text("Doctor.Matrix.Sig:0:*:6b61763474657374{2-8}7369676e\n")  # what keepup2date would bring
        old = time.time() - 30 * 86400
        os.utime(db, (old, old))
        _restart_ave(cell)
        rc, rep = _doctor(cell, timeout="15")
        seen.append(_expect(rep, rc, "database", "database old", "keepup2date"))
        os.utime(db)
        _restart_ave(cell)
        rc, rep = _doctor(cell)
    assert rc == 0 and rep["ok"], f"doctor on a working cell: exit {rc}: {json.dumps(rep)[:1500]}"
    seen.append("whole path ok")

    # aveserver down: the test mail is held by the MTA with the filter's 4xx as the reason
    _stop_ave(cell)
    rc, rep = _doctor(cell, timeout="15")
    seen.append(_expect(rep, rc, "aveserver", "aveserver down", "kav4mailservers-aveserver"))
    held = _link(rep, "delivery")
    assert held["ok"] is False and "held in the queue" in held["detail"], held
    seen.append(f"delivery: {held['detail'][:90]}")
    _restart_ave(cell)
    cell._flush()

    MTA_LINKS[cell.spec.flavour.kind](cell, seen)

    conf = sb.path(CONF)
    original = conf.read_bytes()
    try:
        conf.write_bytes(re.sub(rb"(?m)^ForwardMailer[ \t]*=.*$", b"ForwardMailer=smtp:127.0.0.1:10099", original))
        rc, rep = _doctor(cell, timeout="5")
        seen.append(_expect(rep, rc, "reinjection", "reinjection refused"))
        conf.write_bytes(original + b"\n[smtpscan.general]\nNoSuchKey=1\n")
        rc, rep = _doctor(cell, "--static")
        seen.append(_expect(rep, rc, "config", "NoSuchKey", "kavsetup config check"))
    finally:
        conf.write_bytes(original)
        cell._flush()

    cell._stop_mta()
    try:
        rc, rep = _doctor(cell, timeout="5")
        seen.append(_expect(rep, rc, "mta", "MTA not running", "systemctl start"))
    finally:
        cell._start_mta()
    assert sb.wait_port(10026, timeout=30), "the MTA's reinjection listener did not come back"
    rc, rep = _doctor(cell)
    assert rc == 0, f"doctor after every repair: {json.dumps(rep)[:1500]}"
    if db.exists():  # leave the cell as the package left it (purge compares the tree)
        db.unlink()
        _restart_ave(cell)
    return "; ".join(seen)


def _postfix_links(cell: Any, seen: list[str]) -> None:
    """Postfix: the transport (smtpscanner daemon stopped, or its spawn service commented out) and
    content_filter removed — EICAR then arrives as sent and doctor names the bypass."""
    sb = cell._sb()
    if SMTPSCANNER_UNIT in cell.running or f"initd:{SMTPSCANNER_UNIT}" in cell.running:
        cell._product_stop(SMTPSCANNER_UNIT)
        rc, rep = _doctor(cell, timeout="5")
        seen.append(_expect(rep, rc, "transport", "transport unreachable", "kav4mailservers-smtpscanner"))
        cell._product_start(SMTPSCANNER_UNIT)
        assert sb.wait_port(10025, timeout=30), "smtpscanner did not come back"
        cell._flush()
    else:  # Postfix spawns smtpscanner: take its master.cf service away
        master = sb.path("/etc/postfix/master.cf")
        saved = master.read_bytes()
        sb.run(["postconf", "-M#", "127.0.0.1:10025/inet"]).check()
        sb.run(["postfix", "reload"]).check()
        try:
            time.sleep(1)
            rc, rep = _doctor(cell, timeout="5")
            seen.append(_expect(rep, rc, "transport", "transport unreachable", "kavsetup install"))
        finally:
            master.write_bytes(saved)
            sb.run(["postfix", "reload"]).check()
            cell._flush()

    # content_filter removed: EICAR reaches the mailbox as sent, and doctor says so
    before = sb.run(["postconf", "-h", "content_filter"]).stdout.strip()
    assert before.startswith("kavscan:"), before
    sb.run(["postconf", "-e", "content_filter="]).check()
    sb.run(["postfix", "reload"]).check()
    try:
        rc, rep = _doctor(cell, timeout="30")
        seen.append(_expect(rep, rc, "content_filter", "content_filter missing", "kavsetup install"))
        bypass = _link(rep, "delivery")
        assert bypass["ok"] is False and "bypasses the filter" in bypass["detail"], bypass
    finally:
        sb.run(["postconf", "-e", f"content_filter={before}"]).check()
        sb.run(["postfix", "reload"]).check()



def _listen_file_links(path: str) -> Any:
    """Exim/Sendmail: the listening configuration moved away -> content_filter missing (read only)."""
    def check(cell: Any, seen: list[str]) -> None:
        f = cell._sb().path(path)
        saved = f.read_bytes()
        f.unlink()
        try:
            rc, rep = _doctor(cell, "--static")
            seen.append(_expect(rep, rc, "content_filter", "content_filter missing", "kavsetup install"))
        finally:
            f.write_bytes(saved)
    return check


#: The links only one kind of MTA can break; the rest of the scenario is the same for all.
MTA_LINKS = {"postfix": _postfix_links,
             "exim": _listen_file_links("/etc/exim4/exim4.conf.listen"),
             "sendmail": _listen_file_links("/etc/mail/sendmail.cf.listen")}
