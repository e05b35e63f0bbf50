"""The filter's side of licensing (guide 5.4.1): count Clean mail, send the licence notices.

Two calls from the filter: ``at_start`` when a daemon starts serving and ``after_message`` once a
message's final status and replies are known.  Neither ever raises and neither changes what
happens to the mail (5.4: scanning and mail flow never stop for a key).  The counting and the
rules live in ``runtime/license``; this module only feeds them and sends what they ask for through
the virus notices' path (``Notifier``: templates, macros, the ForwardMailer; the envelope sender is
<> and a notice is never addressed to <>).

``at_start`` is called by the standing daemon only: a filter the MTA spawns per session (stdio,
qmail-queue) has no "start" of its own, so there the once-every-24-hours rule alone applies, on
the first message of the day's window.

Accounting runs while at least one verified key is installed in ``LicensePath``: the key is what
the counts are compared with, and a host without one writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from pathlib import Path

from runtime.config import KavConfig
from runtime.filter.envelope import Envelope, Recipient
from runtime.filter.forward import Outgoing
from runtime.filter.notify import TEMPLATES, VERSION_TEXT, Notifier
from runtime.license.accounting import Accounting, Usage, start_identity
from runtime.license.info import log_key_info
from runtime.license.keyfile import LicenceKey
from runtime.license.keystore import KeyStore
from runtime.license.policy import Notice, day_start, per_message, periodic


class LicenceNotifier(Notifier):
    """The virus notices' builder with the licence templates (``template_licence_<event>``)."""

    def template(self, role: str, event: str) -> str:
        path = str(TEMPLATES / f"template_{event.replace('-', '_')}")
        if path not in self._cache:
            self._cache[path] = Path(path).read_text(encoding="utf-8")
        return self._cache[path]


class LicenceHook:
    def __init__(self, proc) -> None:  # noqa: ANN001 - the Processor (cfg, log, mailer)
        cfg: KavConfig = proc.cfg
        self.proc = proc
        self.cfg = cfg
        self.log = proc.log
        self.store = KeyStore.for_config(cfg)
        self.acc = Accounting(cfg.get("path", "LicenseStatePath"), cfg.get("smtpscan.license", "LicenseDomains"))
        self.admin = str(cfg.group("default").get("AdminAddress") or "")
        self.notifier = LicenceNotifier(cfg)
        self._stamp: object = ()
        self._keys: dict[str, LicenceKey] = {}

    def active(self, today: dt.date) -> dict[str, LicenceKey]:
        stamp = (self.store.stamp(), today)
        if stamp != self._stamp:  # re-read when a key is added or removed, or the day changes
            self._keys = self.store.active(today)
            self._stamp = stamp
        return self._keys

    def usage_for(self, active: dict[str, LicenceKey]) -> dict[str, Usage]:
        return {t: self.acc.usage(day_start(k.issued) if t == "users" else 0.0) for t, k in active.items()}

    async def at_start(self, supervisor: int) -> None:
        """Once per start of the filter (all pre-forked children share the supervisor's identity):
        log the key information (5.4.2) and send every periodic notice that is due (5.4.1)."""
        try:
            today = dt.date.today()
            active = self.active(today)
            if not active:  # nothing to count against; say so (each process: there is no store to share)
                log_key_info(self.log, self.cfg)
                return
            start = start_identity(supervisor)
            if not self.acc.claim_start("start", start):
                return
            log_key_info(self.log, self.cfg)
            for n in periodic(active, self.usage_for(active), today):
                if self.acc.claim_start(n.kind, start):
                    await self._send(n)
        except Exception as exc:  # noqa: BLE001 - licensing never stops the filter
            self.log.error(f"licence: start-up check failed: {exc.__class__.__name__}: {exc}")

    async def after_message(self, env: Envelope, data: bytes, msgid: str, subject: str, outcomes: list) -> None:
        """Count a delivered Clean message; send the notices now due.  Never raises."""
        try:
            today = dt.date.today()
            active = self.active(today)
            if not active:
                return
            # sqlite may wait for another process's transaction: never on the event loop
            due = await asyncio.to_thread(self._account, env, data, msgid, subject, outcomes, active, today)
            for n in due:
                await self._send(n)
        except Exception as exc:  # noqa: BLE001
            self.log.error(f"licence: accounting of message {msgid} failed: {exc.__class__.__name__}: {exc}")

    def _account(self, env: Envelope, data: bytes, msgid: str, subject: str, outcomes: list,
                 active: dict[str, LicenceKey], today: dt.date) -> list[Notice]:
        clean = [o for o in outcomes if o.status == "Clean"]
        delivered = [r for o in clean for r, reply in o.replies.items() if reply.startswith("250")]
        if delivered:
            who = "\0".join([env.sender, *delivered]).encode("utf-8", "surrogateescape")
            digest = hashlib.sha256(who + b"\0")
            digest.update(data)  # no ``who + data`` copy of a big (memory-mapped) message
            self.acc.record(len(data), [env.sender, *delivered], digest=digest.digest())
        usage = self.usage_for(active)
        due = [n for n in periodic(active, usage, today) if self.acc.claim_periodic(n.kind)]
        bad = [o for o in outcomes if o.status != "Clean"]
        if bad:
            status = bad[0].status
            rcpts = "\n".join(r for o in outcomes for r in o.recipients)
            extra = {"SENDER": env.sender or "<>", "RECIPIENT": rcpts, "MSGID": msgid, "SUBJECT": subject,
                     "STATUS": status, "VIRUSNAME": ", ".join(n for o in bad for n in o.names) or status}
            due += [Notice(n.kind, n.event, {**n.macros, **extra}) for n in per_message(active, usage, today, status)]
        return due

    async def _send(self, n: Notice) -> None:
        if not self.admin:
            self.log.warning(f"licence: {n.macros.get('SHORTNAME', n.event)} (no AdminAddress to notify)")
            return
        macros = {"VERSION": VERSION_TEXT, "DATETIME": self.notifier.datetime(time.time()), **n.macros}
        body = self.notifier.build("admin", n.event, self.admin, macros)
        try:
            async with self.proc.mailer.session() as session:
                res = await session.send(Outgoing("", [Recipient(self.admin)], body))
            ok = all(r.ok for r in res.values())
        except Exception as exc:  # noqa: BLE001
            ok, res = False, {self.admin: exc}
        if ok:
            self.log.warning(f"licence: {macros.get('SHORTNAME', n.event)}; notice sent to <{self.admin}>")
            return
        self.log.error(f"licence: notice {n.event} to <{self.admin}> not sent: {res.get(self.admin)}")
        if n.kind:
            self.acc.release(n.kind)
