"""What smtpscanner does with one received message (guide 2.1, 6.1).

split the recipients by group (6.1) -> scan (aveserver; cure mode per group, 6.1.2) -> per object
status: recipient copy and admin copy per action (6.1.3), quarantine, notifications (6.1.4),
X-Anti-Virus header (6.8.4) -> ForwardMailer -> per-recipient result.

The rule above all others: a recipient is answered 250 only when the next hop has accepted that
recipient's copy.  Every other outcome (aveserver unreachable or too slow, the next hop down,
refusing or vanishing, the quarantine unwritable) is a 4xx, so the MTA keeps the message and
tries again.  Order of work inside one group part: quarantine, notifications, then the copy;
whatever fails first stops the part before the copy can be delivered.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from functools import cached_property
from typing import Any

from runtime.config import Group, KavConfig
from runtime.engine.mime import structure_problem
from runtime.engine.verdict import SEVERITY, Status, Verdict
from runtime.filter import mimeedit
from runtime.filter.avescan import AsyncAveClient, AveServerError, AveServerUnavailable
from runtime.filter.envelope import Envelope, Recipient
from runtime.filter.forward import ForwardError, ForwardMailer, Outgoing, Reply
from runtime.filter.licence import LicenceHook
from runtime.filter.mimeedit import WHOLE, Finding
from runtime.filter.notify import VERSION_TEXT, Notifier, message_part, one_line, report_part
from runtime.filter.quarantine import Quarantine
from runtime.filter.spool import IN_MEMORY, FileBody, Spool
from runtime.filter.stats import Statistics
from runtime.report import EventLog

#: Messages up to this size get their structure check on the event loop (well under a
#: millisecond); larger ones in a thread, so one big mail never stalls the other sessions.
INLINE_CHECK = 64 * 1024

#: Config spelling -> rank, for the roll-up of a message's findings (Filtered sits just above Cured).
RANK = {s.config_name: SEVERITY[s] * 2 for s in Status}
RANK["Filtered"] = 3
RANK["Clean"] = 0


def blocking(group: Group, statuses: list[str]) -> str:
    """'reject', 'discard' or '' for a share whose objects have these statuses: one blocking
    RecipientAction blocks the whole copy (reject wins: the message is then never accepted)."""
    actions = {group.setting(s, "RecipientAction") for s in statuses}
    return next((a for a in ("reject", "discard") if a in actions), "")


def worst(statuses: list[str]) -> str:
    return max(statuses, key=lambda s: RANK.get(s, 0), default="Clean")


@dataclass
class PartOutcome:
    """What happened to one group's share of the recipients (for the log, the demo and tests)."""

    group: str
    recipients: list[str]
    status: str = "Clean"
    names: list[str] = field(default_factory=list)
    action: str = ""
    quarantined: str = ""
    notified: list[str] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Leaf:
    """One MIME leaf of the message and, once scanned, its verdict."""

    index: int
    name: str
    real_name: bool  # the message names it (a file name); otherwise ``partN``
    verdict: Verdict | None = None
    error: str = ""  # why there is no verdict (e.g. larger than StreamMaxLength)


@dataclass(frozen=True)
class Incoming:
    """The received message as every group part sees it."""

    env: Envelope
    data: bytes  # LF line endings; bytes-like (a read-only map of the spool file)
    head: Message
    msgid: str
    subject: str
    per_recipient: bool  # LMTP: one reply per recipient; SMTP/qmail-queue: one for all
    spool: Spool | None = None

    @cached_property
    def raw(self) -> bytes:
        """The message as ``bytes``, for what parses or rewrites it (an infected or filtered
        message, a notice, the quarantine): made only when one of them needs it."""
        return as_bytes(self.data)

    def unchanged_copy(self, x_header: str | None) -> bytes | FileBody:
        """The message as received with our X-Anti-Virus header (6.8.4): only its header block
        is rebuilt, the body is sent from the spool file (shared by every group that keeps it)."""
        if self.spool is None or isinstance(self.data, bytes):
            return mimeedit.set_x_header(self.data, x_header)
        end = mimeedit.header_end(self.data)
        if end < 0:
            return mimeedit.set_x_header(self.raw, x_header)
        return FileBody(mimeedit.set_x_header_head(self.data[: end + 1], x_header), self.spool, end + 1)


def as_bytes(data: bytes | Any) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


class TempFail(Exception):
    """Answer 4xx for the recipients concerned; ``code`` is the enhanced status text."""

    def __init__(self, text: str, code: str = "451 4.3.0") -> None:
        super().__init__(text)
        self.reply = f"{code} {one_line(text, 300)}"


class Scanner:
    """One message's scans, shared by its group parts (a scan is done once per cure mode).

    Parsing and per-part work run in a thread, never on the event loop that serves every other
    session; and only after :func:`structure_problem` has bounded them: a message nested deeper
    than MaxDepth or with more than MaxFiles parts is never parsed, it is one object that could
    not be scanned (status Error), decided by the group's rules like any other."""

    def __init__(self, client: AsyncAveClient, data: bytes, max_depth: int = 16, max_parts: int = 10000,
                 spool: Spool | None = None) -> None:
        self.client = client
        self.data = data  # bytes-like: a map of the spool file when there is one
        self.spool = spool
        self.max_depth = max_depth
        self.max_parts = max_parts
        self._whole: Verdict | None = None
        self._leaves: dict[bool, list[Leaf]] = {}
        self._msg = None
        self._problem: str | None | bool = False  # False: not checked yet

    async def problem(self) -> str | None:
        if self._problem is False:
            if len(self.data) <= INLINE_CHECK:  # linear and short: a thread hop would cost more
                self._problem = structure_problem(self.data, self.max_depth, self.max_parts)
            else:
                self._problem = await asyncio.to_thread(structure_problem, self.data, self.max_depth,
                                                        self.max_parts)
            if self.spool is not None:
                self.spool.forget()
        return self._problem  # type: ignore[return-value]

    async def _parsed(self):  # noqa: ANN202
        if self._msg is None:
            self._msg = await asyncio.to_thread(lambda: mimeedit.parse(as_bytes(self.data)))
        return self._msg

    async def leaf_names(self) -> list[Leaf]:
        msg = await self._parsed()
        return await asyncio.to_thread(lambda: [Leaf(i, *mimeedit.leaf_name(i, p)) for i, p in mimeedit.leaves(msg)])

    async def whole(self) -> Verdict:
        if self._whole is None:
            if self.spool is not None:
                # aveserver reads the spool file through its descriptor (AVE/1 SCANFD).
                try:
                    self._whole = await self.client.scan_fd(self.spool.fd, "message", cure=False)
                except AveServerError as exc:
                    if exc.code != 400:
                        raise
                    # an aveserver from before SCANFD (restarted after smtpscanner in an upgrade)
                    self._whole = await self.client.scan(as_bytes(self.data), "message", cure=False)
            else:
                self._whole = await self.client.scan(self.data, "message", cure=False)
        return self._whole

    async def leaves(self, cure: bool) -> list[Leaf]:
        if cure not in self._leaves:
            out = []
            msg = await self._parsed()
            decoded = await asyncio.to_thread(lambda: [(i, *mimeedit.leaf_name(i, p), p.get_payload(decode=True) or b"")
                                                       for i, p in mimeedit.leaves(msg)])
            for i, name, real, payload in decoded:
                try:
                    v: Verdict | None = await self.client.scan(payload, name if real else f"part{i}", cure=cure)
                    err = ""
                except AveServerError as exc:  # e.g. larger than StreamMaxLength: it cannot be scanned
                    v, err = None, str(exc)
                out.append(Leaf(i, name, real, v, err))
            self._leaves[cure] = out
        return self._leaves[cure]

    async def findings(self, group: Group) -> list[Finding]:
        problem = await self.problem()
        if problem is not None:
            return [Finding(WHOLE, "message", "Error", [problem])]
        filter_names = bool(group.get("FilterByName"))
        filtered = set()
        if filter_names:
            filtered = {leaf.index for leaf in await self.leaf_names()
                        if leaf.real_name and group.filtered_name(leaf.name)}
        try:
            whole = await self.whole()
        except AveServerError as exc:
            return [Finding(WHOLE, "message", "Error", [str(exc)])]
        if whole.clean and not filtered:
            return []
        found: list[Finding] = []
        if whole.clean:
            for leaf in await self.leaf_names():
                if leaf.index in filtered:
                    found.append(Finding(leaf.index, leaf.name, "Filtered"))
            return found
        for leaf in await self.leaves(group.cure):
            i, name, v = leaf.index, leaf.name, leaf.verdict
            if v is None:
                found.append(Finding(i, name, "Error", [leaf.error]))
                continue
            status = v.status.config_name
            if status in ("Clean", "Cured") and i in filtered:
                status = "Filtered"
            if status == "Clean":
                continue
            # 6.8.1 names viruses only for some statuses; for the others the reason is what helps.
            names = v.names or list(dict.fromkeys(o.name for o in v.objects if o.name))
            found.append(Finding(i, name, status, names, v.cured, v.deleted, list(v.objects)))
        if not found:
            # The whole message is not clean but no single part is (e.g. a non-MIME container).
            found.append(Finding(WHOLE, "message", whole.status.config_name, whole.names, None, False,
                                 list(whole.objects)))
        return found


class Processor:
    def __init__(self, cfg: KavConfig, log: EventLog, client: AsyncAveClient, mailer: ForwardMailer,
                 stats: Statistics | None = None) -> None:
        self.cfg = cfg
        self.log = log
        self.client = client
        self.mailer = mailer
        self.stats = stats
        self.notifier = Notifier(cfg)
        self.max_check = float(cfg.get("smtpscan.limits", "MaxCheckTime"))
        self.scan_slots = asyncio.Semaphore(cfg.get("smtpscan.limits", "MaxScanners"))
        self.temp = cfg.get("path", "TempPath")
        self.show_ok = cfg.get("smtpscan.report", "ShowOk")
        self.licence = LicenceHook(self)  # 5.4.1 accounting and notices

    # -- helpers -------------------------------------------------------------------------
    def locale(self, key: str) -> str:
        return str(self.cfg.get("locale", key))

    def describe(self, f: Finding) -> str:
        text = self.locale(f.status)
        return f"{f.name}: {text}" + (f" ({', '.join(f.names)})" if f.names else "")

    def removed_text(self, f: Finding) -> str:
        why = self.locale(f.status) + (f": {', '.join(f.names)}" if f.names else "")
        return (f"The object \"{f.name}\" was removed from this message by {VERSION_TEXT}.\n"
                f"Reason: {why}.\n")

    def report_text(self, findings: list[Finding], group: Group, role_attr: str) -> str:
        lines = [f"{VERSION_TEXT}: anti-virus report", ""]
        for f in findings:
            act = mimeedit.outcome(f.status, group.setting(f.status, role_attr), f.deleted)
            detail = "; ".join(o.report_line() for o in f.objects) or self.locale(f.status)
            lines.append(f'"{f.name}" {f.status.upper()} {", ".join(f.names)} -> {act}'.rstrip())
            lines.append(f"    {detail}")
        return "\n".join(lines) + "\n"

    async def x_header(self, status: str) -> str:
        """6.8.4: product and version, bases date and record count, check date and status."""
        try:
            v = await self.client.version()
            date = str(v.get("date", ""))
            if date:
                bases = f"{_bases_day(date)} #{v.get('records', 0)}"
            else:  # an empty database has no date; never print one
                bases = f"none #{v.get('records', 0)}"
        except (AveServerUnavailable, ValueError, OSError):
            if status != "not_checked":
                raise
            bases = "unknown #0"
        return f"{VERSION_TEXT}, bases: {bases}, check: {time.strftime('%Y%m%d')} {status}"

    # -- one message ---------------------------------------------------------------------
    async def process(self, env: Envelope, data: bytes | Spool, per_recipient: bool = True) -> dict[str, str]:
        """Per-recipient SMTP reply lines; never raises.

        ``data`` is the message as received (CRLF), or already spooled in TempPath with LF line
        endings (a :class:`Spool`, from the SMTP/LMTP session, which this then owns).  A message
        larger than :data:`~runtime.filter.spool.IN_MEMORY` is spooled and handed to aveserver
        as a descriptor; a smaller one stays in memory."""
        started = time.monotonic()
        spool = data if isinstance(data, Spool) else None
        size = spool.size if spool is not None else len(data)  # type: ignore[arg-type]
        outcomes: list[PartOutcome] = []
        replies: dict[str, str] = {}
        try:
            if spool is None and len(data) > IN_MEMORY:  # type: ignore[arg-type]
                spool = Spool.from_bytes(self.temp, data.replace(b"\r\n", b"\n"))  # type: ignore[union-attr]
            data = data.replace(b"\r\n", b"\n") if spool is None else spool.view()  # type: ignore[union-attr]
            cut = data.find(b"\n\n")
            head = BytesHeaderParser(policy=compat32).parsebytes(data if cut < 0 else data[: cut + 1])
            msgid = one_line(str(head.get("Message-ID", "") or ""), 200) or "<none>"
            subject = one_line(str(head.get("Subject", "") or ""), 300)
            parts: dict[str, tuple[Group, list[Recipient]]] = {}
            for rc in env.recipients:
                g = self.cfg.select_group(env.sender, rc.address)
                parts.setdefault(g.name, (g, []))[1].append(rc)
            scanner = Scanner(self.client, data, self.cfg.get("aveserver.limits", "MaxDepth"),
                              self.cfg.get("aveserver.limits", "MaxFiles"), spool)
            msg = Incoming(env, data, head, msgid, subject, per_recipient, spool)
            for group, rcpts in parts.values():
                out = PartOutcome(group.name, [r.address for r in rcpts])
                outcomes.append(out)
                try:
                    await self._part(msg, scanner, group, rcpts, out)
                except TempFail as exc:
                    for r in rcpts:
                        out.replies[r.address] = exc.reply
                    self.log.error(f"message {msgid} from <{env.sender}> group {group.name}: {exc} "
                                   "(answered 4xx: the MTA keeps it)")
                replies.update(out.replies)
            self._log(env, msgid, outcomes)
            await self.licence.after_message(env, data, msgid, subject, outcomes)  # never raises
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the MTA must keep the mail
            self.log.error(f"message from <{env.sender}>: internal error {exc.__class__.__name__}: {exc} "
                           "(answered 4xx)")
            for rc in env.recipients:
                replies[rc.address] = "451 4.3.0 internal error in the anti-virus filter, try again later"
        finally:
            if spool is not None:
                spool.close()
        if self.stats is not None:  # the console's statistics store (stats.py, guide 6.8.3)
            self.stats.observe(outcomes, env.sender, size, time.monotonic() - started)
        return {rc.address: replies.get(rc.address, "451 4.3.0 not processed") for rc in env.recipients}

    async def _scan(self, scanner: Scanner, group: Group) -> list[Finding]:
        async with self.scan_slots:
            try:
                return await asyncio.wait_for(scanner.findings(group), self.max_check)
            except TimeoutError:
                raise TempFail(f"scan took longer than MaxCheckTime ({self.max_check:g}s)", "451 4.7.1") from None
            except AveServerUnavailable as exc:
                raise TempFail(f"aveserver unavailable: {exc}", "451 4.7.1") from None

    async def _part(self, msg: Incoming, scanner: Scanner, group: Group, rcpts: list[Recipient],
                    out: PartOutcome) -> None:
        env, msgid = msg.env, msg.msgid
        add_x = bool(group.get("AddXHeaders"))
        notices: list[Outgoing] = []
        copy: bytes | FileBody | None = None  # None: unchanged, sent from the spool
        if not group.check:
            out.status = "not_checked"
            xh = await self.x_header("not_checked") if add_x else None
            findings: list[Finding] = []
        else:
            findings = await self._scan(scanner, group)
            status = worst([f.status for f in findings])
            out.status = status
            out.names = list(dict.fromkeys(n for f in findings for n in f.names))
            try:
                xh = await self.x_header(status.lower() if findings else "clean") if add_x else None
            except AveServerUnavailable as exc:
                raise TempFail(f"aveserver unavailable: {exc}", "451 4.7.1") from None
            if findings:
                data = msg.raw
                statuses = list(dict.fromkeys(f.status for f in findings))
                attach = any(group.setting(s, "RecipientAttachReport") for s in statuses)
                rc_copy = await asyncio.to_thread(
                    mimeedit.build_copy, data, findings, lambda s: group.setting(s, "RecipientAction"),
                    self.removed_text, self.report_text(findings, group, "RecipientAction") if attach else None)
                copy = rc_copy.data
                out.action = self.locale(rc_copy.action)
                # An object that could not be scanned (our limits: size, nesting, parts, time) is
                # never destroyed without a copy: removed from the recipient's copy, it is kept
                # in the quarantine even where the group does not quarantine Error objects.
                keep = [f for f in findings if f.status == "Error" and mimeedit.outcome(
                    f.status, group.setting(f.status, "RecipientAction"), f.deleted) == "removed"]
                if keep and not any(group.setting(s, "Quarantine") for s in statuses):
                    self.log.warning(f"message {msgid}: {', '.join(f.name for f in keep)} could not be scanned "
                                     "and is removed from the recipient's copy: keeping a copy in the quarantine")
                if keep or any(group.setting(s, "Quarantine") for s in statuses):
                    try:
                        q = Quarantine(group.get("QuarantinePath"))
                        out.quarantined = await asyncio.to_thread(
                            q.store, env.sender, out.recipients, data,
                            "; ".join(self.describe(f) for f in findings),
                            group=group.name, status=status, names=out.names, msgid=msgid, subject=msg.subject)
                    except OSError as exc:
                        raise TempFail(f"cannot write quarantine: {exc}") from None
                block = blocking(group, statuses)
                if block:
                    await self._block(msg, group, findings, block, out)
                    return
                notices = await asyncio.to_thread(self._notices, msg, group, findings, rc_copy.action, out)
        copy = msg.unchanged_copy(xh) if copy is None else mimeedit.set_x_header(copy, xh)
        outgoing = Outgoing(env.sender, rcpts, copy, env.mail_params, env.xforward,
                            all_or_nothing=not msg.per_recipient)
        try:
            async with self.mailer.session() as session:
                await self._send_notices(session, notices, msgid)
                res = await session.send(outgoing)
        except ForwardError as exc:
            raise TempFail(f"ForwardMailer: {exc}", "451 4.4.1") from None
        for rc in rcpts:
            r = res.get(rc.address, Reply(451, "no reply"))
            if r.ok:
                out.replies[rc.address] = "250 2.0.0 Ok: scanned and passed on"
            else:
                # Never a 5xx from here: the MTA keeps the message and the admin sees why.
                out.replies[rc.address] = f"451 4.3.0 next hop said: {one_line(str(r), 300)}"
                self.log.error(f"message {msgid}: next hop refused <{rc.address}>: {r} (answered 4xx)")

    async def _send_notices(self, session: Any, notices: list[Outgoing], msgid: str) -> None:
        for n in notices:
            res = await session.send(n)
            for addr, r in res.items():
                if not r.ok and not r.permanent:
                    raise TempFail(f"notification to <{addr}> deferred by next hop: {r}")
                if not r.ok:
                    self.log.warning(f"message {msgid}: notification to <{addr}> refused: {r} (dropped)")

    async def _block(self, msg: Incoming, group: Group, findings: list[Finding], block: str,
                     out: PartOutcome) -> None:
        """RecipientAction=discard|reject (our extension, docs/smtpscanner.md 'Block'): no copy goes
        to the recipients.  The quarantine (already written) and the admin copy keep the original;
        discard answers 250 once the notices are accepted, reject a 5xx the sending client sees
        (config check allows it only for a before-queue SMTP filter)."""
        action = "ActionDiscarded" if block == "discard" else "ActionRejected"
        out.action = self.locale(action)
        # A rejected message was never accepted: its sender learns it from the 5xx, its recipients
        # never expected it; only the administrator is told.
        roles = ("admin", "sender", "recipient") if block == "discard" else ("admin",)
        notices = self._notices(msg, group, findings, action, out, roles)
        if notices:
            try:
                async with self.mailer.session() as session:
                    await self._send_notices(session, notices, msg.msgid)
            except ForwardError as exc:
                raise TempFail(f"ForwardMailer: {exc}", "451 4.4.1") from None
        if block == "discard":
            reply = "250 2.0.0 Ok: discarded by the anti-virus policy"
        else:
            why = ", ".join(out.names) or self.locale(out.status)
            reply = f"550 5.7.1 message refused by the anti-virus policy: {one_line(why, 200)}"
        for r in out.recipients:
            out.replies[r] = reply

    def _notices(self, msg: Incoming, group: Group, findings: list[Finding], rc_action: str,
                 out: PartOutcome, roles: tuple[str, ...] = ("admin", "sender", "recipient")) -> list[Outgoing]:
        env, data = msg.env, msg.raw
        statuses = list(dict.fromkeys(f.status for f in findings))
        event = worst(statuses).lower()
        headers = "".join(f"{k}: {one_line(str(v), 2000)}\n" for k, v in msg.head.items())
        macros = {
            "VERSION": VERSION_TEXT,
            "SENDER": env.sender or "<>",
            "RECIPIENT": "\n".join(out.recipients),
            "MSGID": msg.msgid,
            "VIRUSNAME": "\n".join(self.describe(f) for f in findings),
            "SHORTNAME": ", ".join(out.names) or self.locale(worst(statuses)),
            "SUBJECT": msg.subject,
            "DATETIME": self.notifier.datetime(),
            "HEADERS": headers,
            "ACTION": self.locale(rc_action),
        }
        notices: list[Outgoing] = []

        def wants(attr: str) -> bool:
            return any(group.setting(s, attr) for s in statuses)

        if "admin" in roles and wants("AdminNotify") and group.get("AdminAddress"):
            admin = str(group.get("AdminAddress"))
            ad_copy = mimeedit.build_copy(data, findings, lambda s: group.setting(s, "AdminAction"),
                                          self.removed_text)
            attachments = [message_part(ad_copy.data)]
            if wants("AdminAttachReport"):
                attachments.insert(0, report_part(self.report_text(findings, group, "AdminAction")))
            body = self.notifier.build("admin", event, admin, {**macros, "ACTION": self.locale(ad_copy.action)},
                                       attachments)
            notices.append(Outgoing("", [Recipient(admin)], body))
            out.notified.append("admin")
        if "sender" in roles and wants("SenderNotify") and env.sender:  # never to the null sender
            body = self.notifier.build("sender", event, env.sender, macros)
            notices.append(Outgoing("", [Recipient(env.sender)], body))
            out.notified.append("sender")
        if "recipient" in roles and wants("RecipientNotify"):
            for r in out.recipients:
                body = self.notifier.build("recipient", event, r, macros)
                notices.append(Outgoing("", [Recipient(r)], body))
            out.notified.append("recipient")
        return notices

    def _log(self, env: Envelope, msgid: str, outcomes: list[PartOutcome]) -> None:
        for o in outcomes:
            ok = all(r.startswith("250") for r in o.replies.values())
            if self.stats is not None and ok:
                self.stats.record(o.status, o.names, env.sender, o.recipients)
            if o.status in ("Clean", "not_checked") and ok and not self.show_ok:
                continue
            word = {"Clean": "OK", "not_checked": "NOT_CHECKED"}.get(o.status, o.status.upper())
            bits = [f"message {msgid} from <{env.sender}> to <{'>,<'.join(o.recipients)}> group {o.group}: {word}"]
            if o.names:
                bits.append(" ".join(o.names))
            if o.action:
                bits.append(f"recipient copy: {o.action}")
            if o.quarantined:
                bits.append(f"quarantined {o.quarantined}")
            if o.notified:
                bits.append(f"notified {','.join(o.notified)}")
            if any(r.startswith("5") for r in o.replies.values()):
                bits.append("rejected (5xx)")
            elif not ok:
                bits.append("deferred (4xx)")
            self.log.activity("; ".join(bits))


@functools.lru_cache(maxsize=8)
def _bases_day(date: str) -> str:
    """aveserver's database date (``Tue Dec  1 10:00:00 2026``) as the header's YYYYMMDD: parsed
    once per database, not per message (strptime was 3 % of smtpscanner's CPU per message)."""
    return time.strftime("%Y%m%d", time.strptime(date, "%a %b %d %H:%M:%S %Y"))
