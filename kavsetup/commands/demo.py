"""``kavsetup demo``: the whole mail path on this machine, no MTA needed (what ``make demo`` runs).

It compiles the embedded default configuration (``kavsetup config defaults``) into a scratch root
with scratch paths, quarantine on for the statuses 5.2.4 blocks, notifications to the sender too,
and ForwardMailer pointing at a local SMTP sink; starts aveserver and smtpscanner as real
processes; sends a clean mail and the EICAR family of chapter 8 through smtpscanner with smtplib;
and prints what happened to each message: the answer, the status in X-Anti-Virus, what the
recipient's copy carries, whether it was quarantined and who was notified.

The expected column is computed from the compiled configuration (group rules, 6.1.2-6.1.4) and
chapter 8's table of test objects, not written down by hand: the exit status is 1 if anything the
configuration promises did not happen.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from kavsetup.commands import add_parser
from kavsetup.conffile import render_config
from runtime.config import load_config

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
#: Chapter 8: prefix -> status without cure, status with cure (CURE-/DELE- are cured when asked).
SAMPLES: dict[str, tuple[bytes | None, str, str]] = {
    "clean": (None, "Clean", "Clean"),
    "EICAR": (b"", "Infected", "CureFailed"),
    "CORR-": (b"CORR-", "Corrupted", "Corrupted"),
    "SUSP-": (b"SUSP-", "Suspicious", "Suspicious"),
    "WARN-": (b"WARN-", "Warning", "Warning"),
    "ERRO-": (b"ERRO-", "Error", "Error"),
    "CURE-": (b"CURE-", "Infected", "Cured"),
    "DELE-": (b"DELE-", "Infected", "Cured"),
}
SENDER, RCPT = "alice@example.com", "bob@example.com"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_parser(subparsers, "demo", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--keep", action="store_true", help="keep the scratch root (config, logs, quarantine)")
    p.add_argument("--dir", type=Path, help="scratch root to use (default: a new temporary directory)")
    p.set_defaults(func=run)


# -- a real SMTP sink (the "next hop") --------------------------------------------------------
@dataclass
class _Got:
    sender: str
    rcpts: list[str]
    data: bytes


@dataclass
class _Sink:
    got: list[_Got] = field(default_factory=list)
    port: int = 0

    def start(self) -> _Sink:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP

        sink = self

        class Proto(SMTP):
            async def smtp_MAIL(self, arg):  # noqa: ANN001, ANN201 - the null sender of notices
                self.envelope.mail_from = (arg or "").split()[0][5:].strip("<>") if arg else ""
                self.envelope.demo_mail = True
                await self.push("250 OK")

            async def smtp_RCPT(self, arg):  # noqa: ANN001, ANN201
                if not getattr(self.envelope, "demo_mail", False):
                    await self.push("503 need MAIL")
                    return
                self.envelope.rcpt_tos.append((arg or "").split()[0][3:].strip("<>"))
                await self.push("250 OK")

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
                sink.got.append(_Got(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
                return "250 OK"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

        class C(Controller):
            def factory(self):  # noqa: ANN202
                return Proto(Handler(), decode_data=False)

        self.controller = C(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


# -- helpers ---------------------------------------------------------------------------------
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, what: str, proc: subprocess.Popen[bytes], errfile: Path, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            err = errfile.read_text(errors="replace") if errfile.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {err.strip()}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _connects(addr: str | tuple[str, int]) -> bool:
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    with socket.socket(fam) as s:
        try:
            s.connect(addr)
            return True
        except OSError:
            return False


def _sample(kind: str) -> tuple[bytes, str, bytes]:
    prefix = SAMPLES[kind][0]
    name, payload = ("report.txt", b"quarterly numbers\n") if prefix is None else (f"{kind.strip('-').lower()}.com",
                                                                                   prefix + EICAR)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, RCPT, f"demo: {kind}"
    msg["Message-ID"] = f"<demo.{kind.strip('-')}.{os.getpid()}@example.com>"
    msg.set_content(f"A {kind} test message from kavsetup demo.\n")
    msg.add_attachment(payload, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")), name, payload


def _attachment(data: bytes, name: str) -> bytes | None:
    for part in email.message_from_bytes(data, policy=email.policy.compat32).walk():
        if part.get_filename() == name:
            return part.get_payload(decode=True)
    return None


def _settings(root: Path, sink_port: int, port: int) -> dict[str, dict[str, object]]:
    return {
        "path": {"BasesPath": str(root / "bases"), "LocalSocketPath": str(root / "run" / "aveserver"),
                 "AVSpidPATH": str(root / "run" / "aveserver.pid"), "TempPath": str(root / "spool"),
                 "LicensePath": str(root / "licenses"), "CachePath": str(root / "cache")},
        # the demo runs everything as whoever runs it (a scratch root, not a server): no account switch
        "aveserver.options": {"DetachFromTerminal": False, "Workers": 1, "User": pwd.getpwuid(os.geteuid()).pw_name},
        "aveserver.report": {"ReportFileName": str(root / "log" / "aveserver.log")},
        "smtpscan.general": {"Protocol": "smtp", "ListenAddress": f"inet:127.0.0.1:{port}",
                             "ForwardMailer": f"smtp:127.0.0.1:{sink_port}",
                             "NotifyFromAddress": "MAILER-DAEMON@localhost"},
        "smtpscan.report": {"ReportFileName": str(root / "log" / "smtpscanner.log"), "ShowOk": True,
                            "AVStatistics": str(root / "log" / "smtpscanner.stat")},
        "updater.report": {"ReportFileName": str(root / "log" / "keepup2date.log")},
        "scanner.report": {"ReportFileName": str(root / "log" / "kavscanner.log")},
        # the embedded default group, plus 5.2.4's quarantine and sender notices
        "smtpscan.group:default": {"QuarantinePath": str(root / "quarantine"), "Quarantine": True,
                                   "InfectedQuarantine": True, "SuspiciousQuarantine": True,
                                   "CorruptedQuarantine": True, "ErrorQuarantine": True, "SenderNotify": True},
    }


@dataclass
class Row:
    kind: str
    reply: str = ""
    status: str = ""
    copy: str = ""
    quarantined: bool = False
    notified: list[str] = field(default_factory=list)
    expected: str = ""
    ok: bool = False


def run(args: argparse.Namespace) -> int:
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kav4ms-demo."))
    for d in ("bases", "run", "spool", "log", "licenses"):
        (root / d).mkdir(parents=True, exist_ok=True)
    sink = _Sink().start()
    port = _port()
    conf = root / "kav4mailservers.conf"
    conf.write_text(render_config(_settings(root, sink.port, port)))
    cfg = load_config(conf)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                       os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[Row] = []
    try:
        print(f"kavsetup demo: scratch root {root}")
        # stderr to files, never undrained pipes
        with open(root / "log" / "aveserver.err", "ab") as err:
            ave = subprocess.Popen([sys.executable, "-m", "runtime.engine.server", "-c", str(conf), "-f"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=err)
        procs.append(ave)
        _wait(lambda: _connects(str(root / "run" / "aveserver")), "aveserver", ave, root / "log" / "aveserver.err")
        with open(root / "log" / "smtpscanner.err", "ab") as err:
            scanner = subprocess.Popen([sys.executable, "-m", "runtime.filter.main", "-c", str(conf), "--daemon"],
                                       env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        procs.append(scanner)
        _wait(lambda: _connects(("127.0.0.1", port)), "smtpscanner", scanner, root / "log" / "smtpscanner.err")
        print(f"aveserver (pid {ave.pid}) and smtpscanner (pid {scanner.pid}, SMTP on 127.0.0.1:{port}) are up; "
              f"sink on 127.0.0.1:{sink.port}\n")
        group = cfg.select_group(SENDER, RCPT)
        qdir = Path(str(group.get("QuarantinePath")))
        for kind in SAMPLES:
            rows.append(_one(kind, port, sink, group, qdir))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        sink.stop()
    _table(rows)
    bad = [r for r in rows if not r.ok]
    leftovers = list((root / "spool").iterdir())
    evlog = root / "log" / "smtpscanner.log"
    print(f"\nsmtpscanner event log ({evlog if args.keep or args.dir else 'guide 6.8 format'}):")
    for line in (evlog.read_text(errors="replace").splitlines() if evlog.exists() else []):
        print(f"  {line}")
    if leftovers:
        print(f"spool files left behind: {leftovers}")
    if not args.keep and not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    if bad or leftovers:
        print(f"\nkavsetup demo: {len(bad)} outcome(s) differ from what the configuration promises", file=sys.stderr)
        return 1
    print("\nkavsetup demo: every outcome is what the configuration promises")
    return 0


def _one(kind: str, port: int, sink: _Sink, group, qdir: Path) -> Row:  # noqa: ANN001
    from runtime.filter.mimeedit import outcome

    data, name, payload = _sample(kind)
    row = Row(kind)
    before = set(qdir.glob("*.kavq")) if qdir.is_dir() else set()
    sink.got.clear()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as c:
            c.sendmail(SENDER, [RCPT], data)
        row.reply = "250"
    except smtplib.SMTPResponseException as exc:
        row.reply = str(exc.smtp_code)
    except (smtplib.SMTPException, OSError) as exc:
        row.reply = f"error: {exc}"
    copies = [g for g in sink.got if g.rcpts == [RCPT] and g.sender == SENDER]
    notices = [g for g in sink.got if g.sender == ""]
    after = set(qdir.glob("*.kavq")) if qdir.is_dir() else set()
    row.quarantined = bool(after - before)
    for n in notices:
        msg = email.message_from_bytes(n.data, policy=email.policy.compat32)
        row.notified.append(str(msg.get("X-Anti-Virus-Notice", "?")).split(";")[0])
    row.notified.sort()
    if len(copies) == 1:
        msg = email.message_from_bytes(copies[0].data, policy=email.policy.compat32)
        row.status = str(msg.get("X-Anti-Virus", "")).rsplit(" ", 1)[-1]
        got = _attachment(copies[0].data, name)
        row.copy = "kept" if got == payload else ("removed" if got is None else "cured")
    else:
        row.copy = f"{len(copies)} copies"
    # What the configuration promises (6.1.2 cure mode, 6.1.3 actions, 6.1.4 notices, 5.2.4 quarantine).
    status = SAMPLES[kind][2] if group.cure else SAMPLES[kind][1]
    deleted = kind == "DELE-" and group.cure
    if status == "Clean":
        exp_copy, exp_q, exp_n = "kept", False, []
    else:
        exp_copy = outcome(status, group.setting(status, "RecipientAction"), deleted)
        exp_q = bool(group.setting(status, "Quarantine"))
        exp_n = sorted(r for r, a in (("admin", "AdminNotify"), ("sender", "SenderNotify"),
                                      ("recipient", "RecipientNotify")) if group.setting(status, a))
    row.expected = f"{status.lower()}, {exp_copy}, {'Q' if exp_q else '-'}, {'+'.join(exp_n) or '-'}"
    row.ok = (row.reply == "250" and row.status == status.lower() and row.copy == exp_copy
              and row.quarantined == exp_q and row.notified == exp_n)
    return row


def _table(rows: list[Row]) -> None:
    head = ("sample", "answer", "status", "recipient copy", "quarantined", "notified", "expected", "")
    def copy(r: Row) -> str:
        return {"kept": "delivered unchanged", "cured": "delivered, object cured",
                "removed": "delivered, object removed"}.get(r.copy, r.copy or "not delivered")

    lines = [head] + [(r.kind, r.reply, r.status, copy(r), "yes" if r.quarantined else "no",
                       "+".join(r.notified) or "-", r.expected, "ok" if r.ok else "MISMATCH") for r in rows]
    widths = [max(len(str(x[i])) for x in lines) for i in range(len(head))]
    for i, line in enumerate(lines):
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))

