"""The receiving side: SMTP or LMTP from the MTA (guide 4.4, 6.6), built on aiosmtpd.

aiosmtpd runs the session (greeting, command loop, HELO/NOOP/RSET/QUIT, timeouts) and calls the
handler's ``handle_DATA`` hook; the commands whose stock behaviour would break the filter's
promises are replaced here:

* ``MAIL``/``RCPT`` accept the null sender and keep DSN parameters (RET, ENVID, NOTIFY, ORCPT)
  verbatim for the next hop (6.6.1) — aiosmtpd upper-cases and refuses them;
* ``LHLO``/``EHLO`` advertise exactly what the configuration allows (8BITMIME, DSN, XFORWARD,
  SMTPUTF8, SIZE, PIPELINING) through aiosmtpd's ``handle_EHLO`` hook; LMTP is aiosmtpd's
  ``LMTP`` session class; ``XFORWARD`` is understood (6.6.3);
* ``DATA`` has no line-length 5xx and a too-large message gets 452, never 552: the MTA keeps it;
* under LMTP the end of DATA is answered once per recipient.

Two reads of asyncio's ``StreamReader._buffer`` remain (replies to pipelined commands go out in
one write; bytes pipelined after the final dot go back to the reader): no public API offers
either.  They and the constructor's auth lookup are tested against the aiosmtpd range pinned in
pyproject.toml (tests/filter/test_aiosmtpd_pin.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiosmtpd.smtp as aiosmtpd_smtp
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as AioEnvelope

from runtime.config.values import XFORWARD_ATTRS
from runtime.filter.envelope import Envelope, Recipient
from runtime.filter.spool import DataSpooler, Spool

_PARAM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([!-<>-~]+))?$")
_PATH = re.compile(r"^<([^<>\s]*)>(.*)$|^([^<>\s]+)(.*)$")


class _AuthMembers:
    """aiosmtpd looks for ``auth_*`` methods with ``inspect.getmembers`` on every connection,
    which costs more than the rest of a short session (~110 us of ~180 us per connection); the
    answer depends only on the class.  Stands in for aiosmtpd's ``inspect`` only while a
    :class:`KavSMTP` is constructed (see :func:`_auth_lookup_by_class`)."""

    _cache: dict[type, list[str]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)

    _signatures: dict[tuple[Any, bool], inspect.Signature] = {}

    def signature(self, obj: Any) -> inspect.Signature:
        """aiosmtpd also reads the EHLO hook's signature on every connection (~0.2 ms); it
        depends only on the function (and whether it is bound)."""
        key = (getattr(obj, "__func__", obj), hasattr(obj, "__self__"))
        sig = self._signatures.get(key)
        if sig is None:
            sig = self._signatures[key] = inspect.signature(obj)
        return sig

    def getmembers(self, obj: Any, predicate: Any = None) -> list[tuple[str, Any]]:
        names = self._cache.get(type(obj))
        if names is None:
            names = self._cache[type(obj)] = [n for n in dir(type(obj)) if n.startswith("auth_")]
        return [(n, getattr(obj, n)) for n in names]


_AUTH_MEMBERS = _AuthMembers()


@contextlib.contextmanager
def _auth_lookup_by_class() -> Iterator[None]:
    """The one override of aiosmtpd's internals that is not a hook: local to our constructor (no
    await inside, so no other session can run meanwhile) and tested against the aiosmtpd range
    pinned in pyproject.toml."""
    saved = aiosmtpd_smtp.inspect
    aiosmtpd_smtp.inspect = _AUTH_MEMBERS  # type: ignore[assignment]
    try:
        yield
    finally:
        aiosmtpd_smtp.inspect = saved


_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def _clean_reply(data: bytes) -> bytes:
    """Reply lines never carry control characters: aiosmtpd echoes an unknown command verbatim
    (``500 Error: command "B<CR>C" not recognized``), which put a bare CR or a NUL from the client
    into the reply stream (found by tests/fuzz/test_fuzz_smtpd.py).  Multi-line replies we build
    ourselves (LMTP's one line per recipient) keep their CRLF separators."""
    if not _CONTROL.search(data.replace(b"\r\n", b"")):
        return data
    return b"\r\n".join(_CONTROL.sub(b"?", line) for line in data.split(b"\r\n"))


class KavEnvelope(AioEnvelope):
    def __init__(self) -> None:
        super().__init__()
        self.has_mail = False
        self.sender = ""
        self.params: list[str] = []
        self.recipients: list[Recipient] = []
        self.xforward: dict[str, str] = {}  # what XFORWARD said before this transaction's DATA


@dataclass(frozen=True)
class Features:
    """What the EHLO/LHLO reply offers (from [smtpscan.general] and [smtpscan.limits])."""

    lmtp: bool
    size: int
    eightbit: bool
    dsn: bool
    xforward: list[str] | None
    smtputf8: bool

    def ehlo_lines(self, hostname: str) -> list[str]:
        """Exactly what the configuration allows, nothing aiosmtpd would add on its own (HELP)."""
        lines = [hostname, "PIPELINING"]
        if self.size:
            lines.append(f"SIZE {self.size}")
        if self.eightbit:
            lines.append("8BITMIME")
        if self.dsn:
            lines.append("DSN")
        if self.xforward:
            lines.append("XFORWARD " + " ".join(self.xforward))
        if self.smtputf8:
            lines.append("SMTPUTF8")
        return [f"250{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines)]


class KavSMTP(SMTP):
    """aiosmtpd's SMTP session with the filter's envelope rules, XFORWARD and a bounded DATA."""

    def __init__(self, handler: Any, features: Features, **kwargs: Any) -> None:
        with _auth_lookup_by_class():
            super().__init__(handler, data_size_limit=None, enable_SMTPUTF8=features.smtputf8, **kwargs)
        self.features = features
        self.xforward: dict[str, str] = {}
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self._pending: list[bytes] = []

    async def push(self, status: str | bytes) -> None:
        """Replies to pipelined commands go out together (RFC 2920): while another complete
        command is already waiting in the input, hold the reply; one write per batch."""
        data = status if isinstance(status, bytes) else status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        data = _clean_reply(data)
        self._pending.append(data + b"\r\n")
        if b"\n" in self._reader._buffer:  # noqa: SLF001 - asyncio.StreamReader's input buffer
            return
        out, self._pending = b"".join(self._pending), []
        self._writer.write(out)
        await self._writer.drain()

    def _create_envelope(self) -> KavEnvelope:
        return KavEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Replies are small writes answered by the client only after the last line: with Nagle on,
        # a multi-line reply waits for the client's delayed ACK (40 ms per message).
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        if not self.closed.done():
            self.closed.set_result(None)

    async def smtp_XFORWARD(self, arg: str | None) -> None:
        if not self.features.xforward:
            await self.push('500 Error: command "XFORWARD" not recognized')
            return
        env = self.envelope
        if isinstance(env, KavEnvelope) and env.has_mail:
            await self.push("503 5.5.1 Error: XFORWARD not allowed in a mail transaction")
            return
        pairs = (arg or "").split()
        if not pairs:
            await self.push("501 5.5.4 Syntax: XFORWARD attribute=value...")
            return
        for pair in pairs:
            name, eq, value = pair.partition("=")
            if not eq or name.upper() not in XFORWARD_ATTRS:
                await self.push(f"501 5.5.4 Bad XFORWARD attribute: {name[:40]}")
                return
            if name.upper() in self.features.xforward:
                self.xforward[name.upper()] = value
        await self.push("250 2.0.0 Ok")

    async def smtp_RSET(self, arg: str) -> None:
        self.xforward = {}
        await super().smtp_RSET(arg)

    # -- envelope ------------------------------------------------------------------------
    def _split(self, arg: str | None, keyword: str) -> tuple[str | None, list[str]] | None:
        if arg is None:
            return None
        rest = self._strip_command_keyword(keyword, arg)
        if rest is None:
            return None
        m = _PATH.match(rest.strip())
        if m is None:
            return (None, [])
        address = m.group(1) if m.group(1) is not None else m.group(3)
        params = m.group(2) if m.group(1) is not None else m.group(4)
        if address.count("@") > 1 or len(address) > 512 or any(c in address for c in "\0\r\n"):
            return (None, [])
        if ":" in address and address.startswith("@"):  # source route (RFC 5321 4.1.2): ignore it
            address = address.split(":", 1)[1]
        return address, (params or "").split()

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        env = self.envelope
        assert isinstance(env, KavEnvelope) and self.session is not None
        parsed = self._split(arg, "FROM:")
        if parsed is None:
            await self.push("501 5.5.4 Syntax: MAIL FROM:<address> [parameters]")
            return
        address, params = parsed
        if address is None:
            await self.push("553 5.1.7 Error: malformed sender address")
            return
        if env.has_mail:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        if params and not self.session.extended_smtp:
            await self.push("501 5.5.4 Error: parameters need EHLO/LHLO")
            return
        keep: list[str] = []
        for p in params:
            m = _PARAM.match(p)
            if not m:
                await self.push(f"501 5.5.4 Error: bad parameter {p[:40]}")
                return
            key, value = m.group(1).upper(), m.group(2)
            if key == "SIZE":
                if not value or not value.isdigit():
                    await self.push("501 5.5.4 Error: bad SIZE")
                    return
                if self.features.size and int(value) > self.features.size:
                    # 452, not 552: never a permanent answer from the filter (the MTA keeps it).
                    await self.push("452 4.3.1 Message size exceeds the anti-virus filter's limit")
                    return
            elif key == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    await self.push("501 5.5.4 Error: BODY can only be 7BIT or 8BITMIME")
                    return
                keep.append(f"BODY={value.upper()}")
            elif key == "SMTPUTF8" and self.features.smtputf8 and value is None:
                keep.append("SMTPUTF8")
            elif key in ("RET", "ENVID") and self.features.dsn and value:
                keep.append(f"{key}={value}")  # verbatim: ENVID is case-sensitive xtext (RFC 3461)
            elif key == "AUTH":
                continue
            else:
                await self.push(f"555 5.5.4 MAIL parameter {key[:20]} not supported")
                return
        env.has_mail = True
        env.sender = address
        env.mail_from = address
        env.params = keep
        await self.push("250 2.1.0 Ok")

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        env = self.envelope
        assert isinstance(env, KavEnvelope) and self.session is not None
        if not env.has_mail:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        parsed = self._split(arg, "TO:")
        if parsed is None:
            await self.push("501 5.5.4 Syntax: RCPT TO:<address> [parameters]")
            return
        address, params = parsed
        if not address:
            await self.push("553 5.1.3 Error: malformed recipient address")
            return
        keep: list[str] = []
        for p in params:
            m = _PARAM.match(p)
            key = m.group(1).upper() if m else ""
            if m and key in ("NOTIFY", "ORCPT") and self.features.dsn and m.group(2):
                keep.append(f"{key}={m.group(2)}")
            else:
                await self.push(f"555 5.5.4 RCPT parameter {p[:20]} not supported")
                return
        env.recipients.append(Recipient(address, tuple(keep)))
        env.rcpt_tos.append(address)
        await self.push("250 2.1.5 Ok")

    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        env = self.envelope
        assert isinstance(env, KavEnvelope)
        if not env.has_mail:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        if not env.recipients:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        got = await self._read_data(self.features.size)
        if got is None:
            return  # the client went away mid-DATA: nothing was acknowledged, the MTA keeps it
        content, too_big = got
        xforward, self.xforward = self.xforward, {}
        if too_big:
            self._set_post_data_state()
            await self.push("452 4.3.1 Message size exceeds the anti-virus filter's limit")
            return
        if isinstance(content, OSError):
            self._set_post_data_state()
            await self.push(f"451 4.3.0 cannot spool the message in TempPath: {content.strerror}")
            return
        env.content = env.original_content = content
        env.xforward = xforward
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


    async def _read_data(self, limit: int) -> tuple[bytes | Spool | OSError, bool] | None:
        """The message up to CRLF.CRLF, dot-unstuffed; (b"", True) past ``limit`` bytes.

        Read in large blocks rather than line by line (the per-line loop was the filter's biggest
        cost); a big message goes to a spool file in the handler's ``spool_dir`` (TempPath) as it
        arrives and is never held in memory (spool.py).  Whatever the client pipelined after the
        final dot goes back into the reader.
        """
        reader = self._reader
        data = DataSpooler(getattr(self.event_handler, "spool_dir", None), limit)
        try:
            while True:
                try:
                    chunk = await reader.read(262144)
                except (ConnectionError, OSError):
                    chunk = b""
                if not chunk:
                    data.discard()
                    return None  # the client went away mid-DATA
                rest = data.feed(chunk)
                if rest is not None:
                    break
        except BaseException:
            data.discard()
            raise
        if rest:
            reader._buffer[0:0] = rest  # noqa: SLF001 - pipelined commands after the dot
        if data.too_big or data.failed is not None:
            data.discard()
            return (b"", True) if data.too_big else (data.failed, False)
        if data.spool is None:
            return b"".join(data.held), False
        return data.spool, False


class KavLMTP(KavSMTP, LMTP):
    """The same session speaking LMTP (RFC 2033): aiosmtpd's LMTP answers LHLO and refuses
    HELO/EHLO; the DATA reply is one line per recipient (see :class:`FilterHandler`)."""


def session_class(features: Features) -> type[KavSMTP]:
    return KavLMTP if features.lmtp else KavSMTP


class FilterHandler:
    """aiosmtpd handler: the EHLO/LHLO hook offers the configured extensions, the DATA hook hands
    the message to the Processor."""

    def __init__(self, processor: Any, lmtp: bool) -> None:
        self.processor = processor
        self.lmtp = lmtp
        self.active = 0
        #: where DATA is spooled as it arrives (the processor owns and removes the file)
        self.spool_dir: str | None = getattr(processor, "temp", None)

    async def handle_EHLO(self, server: KavSMTP, session: Any, envelope: KavEnvelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return server.features.ehlo_lines(server.hostname)

    async def handle_DATA(self, server: KavSMTP, session: Any, envelope: KavEnvelope) -> str:
        env = Envelope(envelope.sender, list(envelope.recipients), list(envelope.params),
                       dict(envelope.xforward), session.host_name or "",
                       str(session.peer or ""))
        self.active += 1
        try:
            replies = await self.processor.process(env, envelope.content, per_recipient=self.lmtp)
        finally:
            self.active -= 1
        lines = [replies[r.address] for r in env.recipients]
        if self.lmtp:
            return "\r\n".join(lines)  # RFC 2033: one reply per recipient, in RCPT order
        # A 4xx before a 5xx (RecipientAction=reject in one group): the MTA keeps it and retries.
        bad = [x for x in lines if x.startswith("4")] or [x for x in lines if not x.startswith("250")]
        return bad[0] if bad else lines[0]

    async def handle_exception(self, error: Exception) -> str:
        return "451 4.3.0 internal error in the anti-virus filter, try again later"
