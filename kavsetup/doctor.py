"""``kavsetup doctor``: walk the path a message takes (guide 4.4, chapter 8) and name the first
link that is broken, with the command that fixes it.

    config          kav4mailservers.conf parses and validates (a broken one stops smtpscanner)
    mta             the MTA runs and accepts SMTP on 127.0.0.1:25 (submission)
    content_filter  the MTA hands mail to the filter (postfix content_filter, exim router, ...)
    transport       something answers SMTP/LMTP where the MTA hands the mail
    aveserver       aveserver answers on its socket
    database        the database has records, detects EICAR and is not older than --max-db-age
    reinjection     the MTA's reinjection listener (ForwardMailer) accepts mail from the filter
    delivery        the EICAR test sent through the MTA arrives in the local mailbox scanned
                    (no EICAR, a notice or X-Anti-Virus); when it does not, the MTA's queue says why

What only the MTA knows (is it running, where does it send mail, why is a message held) comes
from its module in kavsetup/mta/ through the registry: each provides ``doctor_links`` and
``queue_reason``.  Every probe is bounded by a timeout; nothing is changed except that one test
message is submitted (not with ``--static``).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import smtplib
import socket
import time
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from kavsetup.detect import detect
from kavsetup.detect.osinfo import layout_of
from kavsetup.detect.rootfs import RootFS
from kavsetup.detect.users import find_user
from kavsetup.integrate.files import Root
from kavsetup.mta import integration

ORDER = ("config", "mta", "content_filter", "transport", "aveserver", "database", "reinjection", "delivery")
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PROBE_TIMEOUT = 5.0
GREETING_TIMEOUT = 30.0


@dataclass
class Link:
    name: str
    ok: bool | None  # None: not checked (an earlier link broke, or --static)
    detail: str
    fix: str = ""


@dataclass
class Report:
    root: str
    mta: str
    links: list[Link] = field(default_factory=list)

    @property
    def stopped_at(self) -> Link | None:
        return next((lk for lk in self.links if lk.ok is False), None)

    @property
    def ok(self) -> bool:
        """The EICAR test arrived scanned and no link is broken (a link that has nothing to probe,
        such as a transport the MTA spawns, is proven by the delivery)."""
        delivery = next((lk for lk in self.links if lk.name == "delivery"), None)
        return delivery is not None and delivery.ok is True and self.stopped_at is None

    def to_dict(self) -> dict[str, Any]:
        stop = self.stopped_at
        return {"ok": self.ok, "root": self.root, "mta": self.mta,
                "stopped_at": stop.name if stop else None,
                "links": [asdict(lk) for lk in self.links]}

    def text(self) -> str:
        lines = [f"kavsetup doctor: {self.mta} at {self.root}"]
        for lk in self.links:
            mark = {True: "ok  ", False: "FAIL", None: "skip"}[lk.ok]
            lines.append(f"  {mark} {lk.name:15} {lk.detail}")
            if lk.ok is False and lk.fix:
                lines.append(f"       {'':15} fix: {lk.fix}")
        stop = self.stopped_at
        lines.append("the whole path works: EICAR went through the filter and arrived scanned" if self.ok else
                     f"stopped at: {stop.name}" if stop else "not every link was checked")
        return "\n".join(lines)


def _endpoint(spec: str) -> tuple[str, tuple[str, int] | str]:
    """``smtp:127.0.0.1:10026``/``inet:...``/``unix:/path``/``127.0.0.1:10025`` -> (protocol, address)."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return "smtp", rest
    if kind not in ("smtp", "lmtp", "inet"):
        rest = spec
    host, _, port = rest.rpartition(":")
    return ("lmtp" if kind == "lmtp" else "smtp"), (host.strip("[]") or "127.0.0.1", int(port))


def smtp_greeting(address: tuple[str, int] | str, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Connect and read the greeting: (a 220 came, what happened)."""
    fam = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    data = b""
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(address)
            except OSError as e:
                return False, f"cannot connect to {_show(address)}: {e.strerror or e}"
            s.settimeout(GREETING_TIMEOUT)  # an MTA may look up the client (DNS, ident) before greeting
            while not re.search(rb"(^|\n)\d{3} [^\n]*\n", data) and len(data) < 4096:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
            with contextlib.suppress(OSError):
                s.sendall(b"QUIT\r\n")
    except OSError as e:
        return False, f"{_show(address)} gave no greeting within {GREETING_TIMEOUT:g}s: {e.strerror or e}"
    line = data.decode("latin-1").strip().splitlines()[-1] if data.strip() else "(connection closed)"
    return line.startswith("220"), f"{_show(address)} says {line[:120]}"


def _show(address: tuple[str, int] | str) -> str:
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


# -- the links ------------------------------------------------------------------------------------
def check_config(root: Root, conf: str) -> tuple[Link, Any]:
    from runtime.config import ConfigError, load_config

    path = root.host(conf)
    if not path.exists():
        return Link("config", False, f"{conf} does not exist", "kavsetup install"), None
    try:
        cfg = load_config(str(path))
    except ConfigError as exc:
        first = exc.messages[0] if exc.messages else str(exc)
        more = f" (+{len(exc.messages) - 1} more)" if len(exc.messages) > 1 else ""
        return Link("config", False, f"filter configuration invalid: {first}{more}",
                    f"kavsetup config check {conf}; correct the line named, then restart smtpscanner"), None
    return Link("config", True, f"{conf} is valid"), cfg


def check_aveserver(root: Root, cfg: Any) -> tuple[Link, dict[str, Any] | None]:
    from runtime.engine.client import AveClient

    sock = str(cfg.get("path", "LocalSocketPath"))
    try:
        with AveClient(root.host(sock), timeout=PROBE_TIMEOUT) as c:
            version = c.version()
            verdict = c.scan_bytes(EICAR, "eicar.com")
    except Exception as exc:  # noqa: BLE001 - any failure is "down", shown with its reason
        return Link("aveserver", False, f"aveserver down: no answer on {sock} ({exc})",
                    "systemctl start kav4mailservers-aveserver (or: aveserver -c CONF)"), None
    return Link("aveserver", True, f"answers on {sock}: {version.get('product', '')}"), {
        "version": version, "verdict": verdict}


def check_database(info: dict[str, Any], max_age_days: float) -> Link:
    version, verdict = info["version"], info["verdict"]
    records = int(version.get("records", 0) or 0)
    fix = "keepup2date (guide 5.1), then aveserver reloads the database"
    if records == 0:
        return Link("database", False, "database empty: aveserver loaded 0 records", fix)
    date = str(version.get("date", ""))
    try:
        age = time.time() - time.mktime(time.strptime(date, "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        age = None
    if age is not None and age > max_age_days * 86400:
        return Link("database", False, f"database old: {age / 86400:.1f} days (from {date}); "
                    f"more than {max_age_days:g}", fix)
    if verdict.clean:
        return Link("database", False, "the EICAR test scans clean: the database cannot be used", fix)
    return Link("database", True, f"{records} records from {date}; EICAR found as {', '.join(verdict.names)}")


def check_reinjection(cfg: Any) -> Link:
    spec = str(cfg.get("smtpscan.general", "ForwardMailer"))
    try:
        _, address = _endpoint(spec)
    except ValueError:
        return Link("reinjection", False, f"ForwardMailer {spec!r} is not an address",
                    "kavsetup install (it sets ForwardMailer to the MTA's reinjection listener)")
    ok, what = smtp_greeting(address)
    return Link("reinjection", ok, ("accepts connections: " if ok else "reinjection refused: ") + what,
                "" if ok else "the MTA's reinjection listener is missing or down: kavsetup install, "
                "then reload the MTA")


class MailboxWatch:
    """What arrives in the user's mbox (/var/mail/USER) or ~/Maildir after :meth:`start`: only the
    bytes appended to the mbox and the Maildir files that are new are read, so a large mailbox
    costs nothing per poll."""

    def __init__(self, root: Root, user: str) -> None:
        self.mbox = root.host(f"/var/mail/{user}")
        entry = find_user(RootFS(root.path), user)
        self.maildir = root.host(entry.home) / "Maildir" if entry and entry.home.startswith("/") else None
        self.offset = 0
        self.seen: set[str] = set()

    def _maildir_files(self) -> list[Path]:
        if self.maildir is None:
            return []
        return [f for d in ("new", "cur") if (self.maildir / d).is_dir() for f in (self.maildir / d).iterdir()]

    def start(self) -> None:
        self.offset = self.mbox.stat().st_size if self.mbox.is_file() else 0
        self.seen = {f.name for f in self._maildir_files()}

    def new_messages(self) -> list[bytes]:
        out: list[bytes] = []
        if self.mbox.is_file():
            with open(self.mbox, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(64 << 20)
            out += [m for m in re.split(rb"(?:^|\n)(?=From )", data) if m.strip()]
        for f in self._maildir_files():
            if f.name.split(":", 1)[0] not in {n.split(":", 1)[0] for n in self.seen}:
                with contextlib.suppress(OSError):
                    out.append(f.read_bytes())
        return out


def eicar_message(token: str, to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "kavsetup doctor <postmaster@localhost>"
    msg["To"] = to
    msg["Subject"] = f"kav4mailservers doctor {token}"
    msg["Message-ID"] = f"<doctor.{token}@kav4mailservers.invalid>"
    msg.set_content(f"The EICAR test file, sent by kavsetup doctor ({token}). It must not arrive as sent.\n")
    msg.add_attachment(EICAR, maintype="application", subtype="octet-stream", filename="eicar.com")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))  # SMTP lines end in CRLF (Sendmail refuses bare LF)


def check_delivery(root: Root, module: Any, mta: Any, to: str, timeout: float) -> Link:
    token = secrets.token_hex(8)
    user = to.split("@", 1)[0]
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", user):
        return Link("delivery", False, f"--to {to!r}: not a local user name", "give a local user with --to")
    watch = MailboxWatch(root, user)
    watch.start()
    rcpt = to if "@" in to else f"{to}@localhost"
    try:
        with smtplib.SMTP("127.0.0.1", 25, timeout=30) as c:
            c.ehlo("kavsetup-doctor")
            c.mail("<>")
            code, resp = c.rcpt(rcpt)
            if code >= 300:
                return Link("delivery", False, f"the MTA refused RCPT TO:<{rcpt}>: {code} {resp.decode()[:120]}",
                            f"give a local recipient with --to (now {to})")
            code, resp = c.data(eicar_message(token, rcpt))
    except (OSError, smtplib.SMTPException) as exc:
        return Link("delivery", False, f"submission failed: {exc}", "see the mail log")
    reply = resp.decode("latin-1")
    if code >= 300:
        return Link("delivery", False, f"the MTA refused the test message: {code} {reply[:160]}", "see the mail log")
    deadline = time.monotonic() + timeout
    while True:
        arrived = [m for m in watch.new_messages() if token.encode() in m]
        if arrived:
            break
        if time.monotonic() > deadline:
            held = module.queue_reason(root, mta, reply) if hasattr(module, "queue_reason") else None
            if held:
                reason, fix = held
                return Link("delivery", False, f"mail held in the queue: {reason}", fix)
            return Link("delivery", False, f"{token} did not arrive in {user}'s mailbox within {timeout:g}s and "
                        "is not in the MTA's queue", "see the mail log")
        time.sleep(0.5)
    bypass = "kavsetup install (the MTA does not hand this mail to the filter)"
    if any(carries_eicar(m) for m in arrived):
        return Link("delivery", False, f"{token} arrived with EICAR as sent: mail bypasses the filter", bypass)
    if not any(re.search(rb"(?im)^X-Anti-Virus", m.split(b"\n\n", 1)[0]) for m in arrived):
        return Link("delivery", False, f"{token} arrived without an X-Anti-Virus header: not scanned", bypass)
    return Link("delivery", True, f"{token} arrived in {user}'s mailbox scanned (EICAR removed)")


def carries_eicar(raw: bytes) -> bool:
    """EICAR anywhere in the message once every part is decoded (base64 hides it from a byte search)."""
    import email
    import email.policy

    if EICAR in raw:
        return True
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in msg.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and EICAR in payload:
            return True
    return False


def diagnose(root_dir: Path, conf: str | None = None, static: bool = False, to: str = "root",
             timeout: float = 60.0, max_age_days: float = 7.0, kind: str = "auto", mta_config: str = "") -> Report:
    from kavsetup.integrate.site import choose_mta
    from kavsetup.mta import CompileError

    root = Root(root_dir)
    conf = conf or layout_of(RootFS(root.path)).conf_file  # the system's OS layout (runtime/layout.py)
    try:
        active = choose_mta(detect(root.path), root, kind, mta_config)
        problem = ""
    except CompileError as exc:
        active, problem = None, str(exc)
    report = Report(str(root.path), active.kind.value if active else "none")
    config, cfg = check_config(root, conf)
    report.links.append(config)
    if active is None:
        report.links.append(Link("mta", False, problem, "install Postfix, Exim or Sendmail, or name it: "
                                 "--mta KIND --mta-config FILE"))
        return _rest(report)
    module = integration(active.kind)
    mta_links: dict[str, Link] = {}
    if hasattr(module, "doctor_links"):
        for name, (ok, detail, fix) in module.doctor_links(root, active, static).items():
            mta_links[name] = Link(name, ok, detail, fix)
    else:
        for name in ("mta", "content_filter"):
            mta_links[name] = Link(name, None, f"kavsetup doctor cannot inspect {active.kind.value} yet")
    report.links += [mta_links["mta"], mta_links["content_filter"]]
    if static:
        return _rest(report, "not probed (--static)")
    target = mta_links.get("transport_address")
    if "transport" in mta_links:
        report.links.append(mta_links["transport"])
    elif target is not None and target.detail:
        try:
            ok, what = smtp_greeting(_endpoint(target.detail)[1])
        except ValueError:
            ok, what = False, f"{target.detail!r} is not an address"
        report.links.append(Link("transport", ok, ("answers: " if ok else "transport unreachable: ") + what,
                                 "" if ok else target.fix))
    else:
        report.links.append(Link("transport", None, "where the MTA hands mail is not known"))
    if cfg is None:
        return _rest(report)
    ave, info = check_aveserver(root, cfg)
    report.links.append(ave)
    report.links.append(check_database(info, max_age_days) if info else
                        Link("database", None, "not checked: aveserver is down"))
    report.links.append(check_reinjection(cfg))
    if report.stopped_at is not None and report.stopped_at.name == "mta":
        return _rest(report)
    report.links.append(check_delivery(root, module, active, to, timeout))
    return _rest(report)


def _rest(report: Report, why: str = "") -> Report:
    have = {lk.name for lk in report.links}
    stop = report.stopped_at
    for name in ORDER:
        if name not in have:
            report.links.append(Link(name, None, why or f"not checked: {stop.name if stop else 'earlier'} is broken"))
    report.links.sort(key=lambda lk: ORDER.index(lk.name))
    return report
