"""Sendmail integration (guide 2.1, 4.4.1): two instances around smtpscanner.

``sendmail.cf.listen`` is derived from ``sendmail.cf`` (which stays the delivering
configuration, untouched) with:

* the ``smtpscanner`` mailer (guide's ``Msmtpscanner`` with ``P=``/``F=``/``A=``; ``F=z`` for
  LMTP, without it Sendmail speaks SMTP to a mailer whose ``A=`` has no ``$u``), run as
  ``U=kluser:filter``;
* one rule at the top of ``ParseLocal`` (ruleset 98, which ruleset 0 calls for every address):
  ``R$*  $#smtpscanner $@ localhost $: $1`` — every recipient resolves to the scanner, whatever
  the rest of the configuration does.  Local delivery, aliases and relaying stay with the
  delivering instance;
* its own queue directory and pid file, so neither instance ever runs the other's queue (a
  deferred message in the listening queue must never be delivered unscanned).

Scanned mail comes back over SMTP to the delivering instance on 127.0.0.1:10026
(``ForwardMailer=smtp:127.0.0.1:10026``).  The guide's ``smtp:(/usr/sbin/sendmail -bs -C
sendmail.cf)`` would run Sendmail as the unprivileged filter user, which since 8.12 cannot
write the MTA queue (it goes through the MSP and back into the listening instance): a loop.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path, PurePosixPath
from typing import Any

from kavsetup.detect.model import InitSystem, MTAInfo, SendmailInfo, System
from kavsetup.detect.sendmail import dz_version
from kavsetup.integrate.edits import DeriveFile, Edit, EnsureDir, WriteFile
from kavsetup.integrate.files import Root
from kavsetup.integrate.settings import IntegrationSettings
from kavsetup.mta import CompileError, checker, common
from kavsetup.mta.common import choose_ports
from kavsetup.mta.templates import render

LISTEN_QUEUE = "/var/spool/mqueue-kav"
LISTEN_PID = "/run/sendmail-kav-listen.pid"
DELIVER_PID = "/run/sendmail-kav-deliver.pid"


#: What the setup dialogue (kavsetup/conversation.py) asks for this MTA (see postfix.SETUP).
SETUP = {"config": "/etc/mail/sendmail.cf", "config_is": r"^(V[0-9]+/|DZ|O [A-Z])", "config_not": "",
         "choices": ("protocol",), "ports": ("reinject_port",)}

def listen_path(mta: MTAInfo) -> str:
    return str(mta.sendmail.sendmail_cf) + ".listen"


def mailer(s: IntegrationSettings) -> str:
    flags = "PCXmz9" if s.protocol == "lmtp" else "PCXm9"
    return (f"Msmtpscanner,\tP={s.prefix}/bin/smtpscanner, F={flags}, S=EnvFromSMTP/HdrFromSMTP, "
            f"R=EnvToSMTP, E=\\r\\n, L=2040,\n"
            f"\t\tT=DNS/RFC822/SMTP, U={s.user}:{s.group},\n"
            f"\t\tA=smtpscanner --stdio")


RULE = "R$*\t\t\t$#smtpscanner $@ localhost $: $1\t\tkav4mailservers: scan all mail"


def plan(system: System, mta: MTAInfo, s: IntegrationSettings) -> tuple[list[Edit], list[str]]:
    info = mta.sendmail
    if not info.sendmail_cf_exists:
        raise CompileError(f"sendmail: {info.sendmail_cf} not found; give it with --mta-config")
    cf = str(info.sendmail_cf)
    listen = listen_path(mta)
    _f, rport = choose_ports(s)
    edits: list[Edit] = []
    acct, uid, gid = common.accounts(system, s, s.spool)
    edits += acct
    edits += common.parent_dirs(s.spool)
    edits.append(EnsureDir(s.spool, 0o750, uid, gid))
    edits += common.parent_dirs(LISTEN_QUEUE)
    edits.append(EnsureDir(LISTEN_QUEUE, 0o700, 0, 0))
    edits += common.conf_edits(s, f"smtp:{s.filter_host}:{rport}", "stdio", gid)
    values = {"listen_cf": listen, "sendmail_cf": cf, "submit_cf": str(info.mail_dir / "submit.cf"),
              "listen_queue": LISTEN_QUEUE, "listen_pid": LISTEN_PID, "deliver_pid": DELIVER_PID,
              "reinject_host": s.filter_host, "reinject_port": str(rport),
              "reinject_addr": f"{s.filter_host}:{rport}"}
    script = f"{s.prefix}/bin/kavsendmail.sh"
    edits += common.parent_dirs(script)
    edits.append(WriteFile(script, render("kavsendmail.sh", **values), 0o755))
    units = ["kav4ms-sendmail-listen.service", "kav4ms-sendmail-deliver.service"]
    if info.submit_cf is not None:
        units.append("kav4ms-sendmail-msp.service")
    if system.os.init in (InitSystem.SYSTEMD, InitSystem.UNKNOWN):
        edits += common.parent_dirs(f"{s.unit_dir}/x")
        for unit in units:
            edits.append(WriteFile(str(PurePosixPath(s.unit_dir) / unit), render(unit, **values), 0o644))
    edits.append(DeriveFile(
        listen, cf,
        inserts=(("smtpscanner-rule", r"^SParseLocal(=98)?\s*$", RULE),
                 ("smtpscanner-mailer", "", mailer(s))),
        replaces=((r"^O QueueDirectory=.*$", f"O QueueDirectory={LISTEN_QUEUE}"),
                  (r"^#?O PidFile=.*$", f"O PidFile={LISTEN_PID}"))))
    notes = [f"sendmail: start the two instances with {script} start (or the systemd units "
             f"{', '.join(units)}) instead of the sendmail service"]
    return edits, notes


def from_config(root: Root, config: str, detected: MTAInfo | None) -> MTAInfo:
    p = PurePosixPath(config)
    if detected is not None:
        info = dataclasses.replace(detected.sendmail, sendmail_cf=p, sendmail_cf_exists=True)
        return dataclasses.replace(detected, config_file=p, details=info)
    version = dz_version(root.text(p))
    submit = p.parent / "submit.cf"
    info = SendmailInfo(version, p, True, submit if root.read(submit).exists else None, None, None, p.parent)
    return MTAInfo.configured(info, p, version, "--mta-config" if version else "")


def site_facts(root: Root, mta: MTAInfo) -> dict[str, Any]:
    return {"postmasters": common.read_postmasters(root.text("/etc/aliases").splitlines())}


def verify(root: Root, mta: MTAInfo, s: IntegrationSettings) -> tuple[bool, str]:
    """``sendmail -bt`` with the listening configuration must route a recipient to smtpscanner."""
    listen = listen_path(mta)
    argv, why = checker.runner(root, "/usr/sbin/sendmail")
    if argv is None:
        return True, f"verification skipped: {why}"
    code, out = checker.run([*argv, "-bt", "-C", listen], "3,0 postmaster@example.com\n")
    if "smtpscanner" not in out:
        return False, f"sendmail -bt -C {listen} does not route to smtpscanner: {checker.last_line(out, code)}"
    return True, "sendmail -bt routes mail to smtpscanner"


# -- the running Sendmail after install/uninstall (issue 11 item 7) ----------------------------------
#: The system daemon's pid files (Debian's, then the classic one).
SYSTEM_PIDS = ("/run/sendmail/mta/sendmail.pid", "/var/run/sendmail.pid")
SENDMAIL_CF = "/etc/mail/sendmail.cf"


def _main_queue(root: Root) -> tuple[Path | None, str]:
    """The delivering instance's queue directory (``O QueueDirectory=`` of sendmail.cf), or why not."""
    m = re.search(r"^O QueueDirectory=(\S+)\s*$", root.text(SENDMAIL_CF), re.M)
    qdir = m.group(1) if m else "/var/spool/mqueue"
    if "*" in qdir or not qdir.startswith("/"):
        return None, f"{SENDMAIL_CF} uses queue groups or a relative queue ({qdir})"
    host = root.host(qdir)
    return (host, "") if host.is_dir() else (None, f"{qdir} is not a directory")


def held_messages(listen: Path, main: Path) -> list[common.HeldMessage]:
    """The messages in the listening queue (``qfID``, or ``hfID`` when quarantined), with where each
    file goes in the main queue (its ``qf/``, ``df/``, ``xf/`` subdirectories when it has them):
    ``df`` and ``xf`` first, the control file last (a queue run only sees a message by it).
    Sendmail locks the control file while it works on the message."""
    def where(kind: str) -> Path:
        sub = main / kind
        return sub if sub.is_dir() else main

    out: list[common.HeldMessage] = []
    for control in sorted([*listen.glob("qf*"), *listen.glob("hf*")]):
        ident = control.name[2:]
        files = [(listen / f"{kind}{ident}", where(kind) / f"{kind}{ident}") for kind in ("df", "xf")
                 if (listen / f"{kind}{ident}").is_file()]
        files.append((control, where("qf") / control.name))
        out.append(common.HeldMessage(ident, control, tuple(files)))
    return out


def hand_back(root: Root) -> list[str]:
    """Before uninstall: stop the listening instance (its configuration is about to go) and move the
    mail waiting in its queue (for example while aveserver was down) into the main queue, where
    ``after_change`` has Sendmail deliver it. Without this it would wait forever in a queue no
    daemon reads."""
    notes = common.stop_daemon(root, LISTEN_PID, "sendmail: the listening instance")
    listen = root.host(LISTEN_QUEUE)
    if not listen.is_dir():
        return notes
    if not any(listen.glob("qf*")) and not any(listen.glob("hf*")):
        return notes
    main, why = _main_queue(root)
    if main is None:
        return [*notes, f"sendmail: mail held in {LISTEN_QUEUE} is left there: {why}"]
    return notes + common.hand_back(held_messages(listen, main), "sendmail", str(main))


def after_change(root: Root, phase: str) -> list[str]:
    """Sendmail re-reads sendmail.cf on SIGHUP; a queue run then retries what waited, and after
    uninstall the mail ``hand_back`` moved into the main queue. After install the listening/
    delivering pair replaces the system daemon (see the plan's notes); after uninstall the system
    daemon takes port 25 back."""
    pidfile = next((p for p in (DELIVER_PID, *SYSTEM_PIDS) if common.pid_alive(root, p)), None)
    manual = [["sh", "-c", f"kill -HUP $(head -1 {SYSTEM_PIDS[0]})"], ["sendmail", "-q"]]
    if pidfile is None:
        return common.not_running("sendmail", manual)
    pid = root.host(pidfile).read_text().split()[0]
    notes = common.run_commands([["kill", "-HUP", pid], ["sendmail", "-q"]], "sendmail")
    if phase == "uninstall" and pidfile == DELIVER_PID:
        notes.append("sendmail: the listening instance is gone; start the system's sendmail service again "
                     f"(`invoke-rc.d sendmail start` or `systemctl start sendmail`), then stop the delivering "
                     f"instance (`kill {pid}`)")
    return notes
# -- kavsetup doctor (kavsetup/doctor.py): what only Sendmail can tell ---------------------------
def doctor_links(root: Root, mta: MTAInfo, static: bool) -> dict[str, tuple[bool | None, str, str]]:
    """``mta``: the listening instance runs (its pid file, /proc); ``content_filter``: the
    listening configuration holds the smtpscanner mailer and the rule sending every recipient to
    it; ``transport``: nothing listens — Sendmail runs smtpscanner per delivery (the delivery
    test proves it)."""
    listen = listen_path(mta)
    links: dict[str, tuple[bool | None, str, str]] = {}
    if static:
        links["mta"] = (None, "not probed (--static)", "")
    else:
        links["mta"] = common.listening_instance_link(
            root, LISTEN_PID, "sendmail", "systemctl start kav4ms-sendmail-listen kav4ms-sendmail-deliver "
            "(or /opt/kav/5.5/kav4mailservers/bin/kavsendmail.sh start)")
    text = root.text(listen) if root.read(listen).kind == "file" else ""
    if not text:
        links["content_filter"] = (False, f"content_filter missing: {listen} does not exist, Sendmail "
                                   "delivers unscanned", "kavsetup install")
    elif "Msmtpscanner" not in text or "$#smtpscanner" not in text:
        links["content_filter"] = (False, f"content_filter missing: {listen} lacks the smtpscanner mailer "
                                   "or its ParseLocal rule", "kavsetup install")
    else:
        links["content_filter"] = (True, f"{listen} sends every recipient to the smtpscanner mailer", "")
    links["transport"] = (None, "smtpscanner is started by Sendmail's mailer for each delivery "
                          "(nothing listens; the delivery test proves it)", "")
    return links


def queue_reason(root: Root, mta: MTAInfo, reply: str) -> tuple[str, str] | None:
    """Why the message accepted with ``reply`` (``250 2.0.0 ID Message accepted``) waits: the
    parenthesised reason under its entry in the listening queue (``sendmail -C LISTEN -bp``)."""
    m = re.search(r"^\S+\s+(\S+)\s+Message accepted", reply)
    argv, _ = checker.runner(root, "/usr/sbin/sendmail")
    if m is None or argv is None:
        return None
    qid = m.group(1)
    _code, out = checker.run([*argv, "-C", listen_path(mta), "-bp"])
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(qid):
            reason = next((ln.strip() for ln in lines[i + 1:i + 4] if ln.strip().startswith("(")),
                          "(waiting in the listening queue, not tried yet)")
            return (f"{qid}: {reason[:300]}",
                    f"fix the cause, then: sendmail -C {listen_path(mta)} -qI{qid}")
    return None
