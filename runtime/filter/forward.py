"""ForwardMailer: hand scanned mail back to the MTA (guide 4.4.5).

``smtp:host:port`` / ``lmtp:host:port`` speak to a listening MTA, ``smtp:(command)`` /
``lmtp:(command)`` speak the same protocol to a program's stdin/stdout (``sendmail -bs``,
``exim -bs``), ``qmail:(path)`` runs the original ``qmail-queue`` (message on fd 0, envelope on
fd 1).  Every failure to get a definite answer raises :class:`ForwardError`, which the filter turns
into a 4xx: a message is only acknowledged once the next hop has taken it.

TCP connections are kept and reused for the next message (a finished SMTP transaction leaves the
session ready for the next MAIL); a reused connection that turns out to be dead is replaced once,
but only before any message data was sent, so nothing can be delivered twice by this retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import socket
import subprocess
from dataclasses import dataclass, field

from runtime.config.values import MailerSpec
from runtime.filter.envelope import Recipient
from runtime.filter.spool import FileBody


class ForwardError(Exception):
    """The next hop could not be reached or did not answer (a temporary failure)."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


@dataclass
class Outgoing:
    """One message to hand over: envelope plus bytes (any line ending; sent as CRLF)."""

    sender: str
    recipients: list[Recipient]
    data: bytes | FileBody  # FileBody: an unchanged copy, read from the spool while sent
    mail_params: list[str] = field(default_factory=list)  # ENVID=, RET=, BODY=, SMTPUTF8 (verbatim)
    xforward: dict[str, str] = field(default_factory=dict)
    #: SMTP-in and qmail-queue have one answer for all recipients: deliver to all or to none.
    all_or_nothing: bool = False


def to_crlf(data: bytes) -> bytes:
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return out if out.endswith(b"\r\n") or not out else out + b"\r\n"


def dot_stuff(data: bytes) -> bytes:
    body = to_crlf(data)
    body = body.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body + b".\r\n"


class DotStuffer:
    """:func:`dot_stuff` for a body given in chunks (a :class:`~runtime.filter.spool.FileBody`):
    the same bytes, never the whole body at once.  Pieces are cut just after an LF, so no CRLF
    and no line start is split; a line with no LF at all is cut once it is long (never after a
    CR, which could begin a CRLF)."""

    def __init__(self) -> None:
        self.carry = b""
        self.bol = True  # the next byte starts a line
        self.tail = b""  # the last two bytes sent
        self.any = False

    def feed(self, chunk: bytes) -> bytes:
        buf = self.carry + chunk if self.carry else chunk
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            if len(buf) <= 65536 or buf.endswith(b"\r"):
                self.carry = buf
                return b""
            cut = len(buf)
        self.carry = buf[cut:]
        return self._convert(buf[:cut])

    def _convert(self, piece: bytes) -> bytes:
        out = piece.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
        if self.bol and out.startswith(b"."):
            out = b"." + out
        if out:
            self.any = True
            self.bol = out.endswith(b"\n")
            self.tail = (self.tail + out)[-2:]
        return out

    def close(self) -> bytes:
        out = self._convert(self.carry) if self.carry else b""
        self.carry = b""
        if self.any and self.tail != b"\r\n":
            out += b"\r\n"
        return out + b".\r\n"


class Connection:
    """One SMTP/LMTP session with the next hop (over TCP or a program's stdio)."""

    def __init__(self, spec: MailerSpec, timeout: float, helo: str) -> None:
        self.spec = spec
        self.timeout = timeout
        self.helo = helo
        self.lmtp = spec.proto == "lmtp"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.ext: dict[str, str] = {}
        self.broken = False
        self.used = 0
        self.data_sent = False  # message bytes of the current transaction went out

    async def open(self) -> None:
        try:
            if self.spec.argv:
                self.proc = await asyncio.create_subprocess_exec(
                    *self.spec.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                )
                assert self.proc.stdout is not None
                self.reader = self.proc.stdout
                self.writer = self.proc.stdin  # type: ignore[assignment]
            else:
                self.reader, self.writer = await asyncio.wait_for(
                    asyncio.open_connection(self.spec.host, self.spec.port), self.timeout
                )
                sock = self.writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, TimeoutError) as exc:
            raise ForwardError(f"cannot connect to {self.spec.canonical}: {exc or 'timeout'}") from None
        greet = await self.reply()
        if greet.code != 220:
            raise ForwardError(f"{self.spec.canonical} greeted with {greet}")
        await self.write(f"{'LHLO' if self.lmtp else 'EHLO'} {self.helo}\r\n".encode())
        ehlo = await self.reply(lines=True)
        if not ehlo.ok and not self.lmtp:
            await self.write(f"HELO {self.helo}\r\n".encode())
            ehlo = await self.reply(lines=True)
        if not ehlo.ok:
            raise ForwardError(f"{self.spec.canonical} refused {'LHLO' if self.lmtp else 'EHLO'}: {ehlo}")
        for line in ehlo.text.split("\n")[1:]:
            word, _, arg = line.strip().partition(" ")
            self.ext[word.upper()] = arg

    async def write(self, data: bytes) -> None:
        assert self.writer is not None
        try:
            self.writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except (OSError, TimeoutError, RuntimeError) as exc:
            self.broken = True
            raise ForwardError(f"{self.spec.canonical}: write failed: {exc or 'timeout'}") from None

    async def reply(self, lines: bool = False) -> Reply:
        """Read one (possibly multi-line) reply; ``lines`` keeps every line in ``text``."""
        assert self.reader is not None
        texts: list[str] = []
        while True:
            try:
                # asyncio.timeout, not wait_for: no task per reply line (half the cost per call, and
                # this is every reply of every forwarded message)
                async with asyncio.timeout(self.timeout):
                    raw = await self.reader.readline()
            except (OSError, TimeoutError, asyncio.LimitOverrunError, ValueError) as exc:
                self.broken = True
                raise ForwardError(f"{self.spec.canonical}: no reply: {exc or 'timeout'}") from None
            if not raw:
                self.broken = True
                raise ForwardError(f"{self.spec.canonical} closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not (line[:3].isascii() and line[:3].isdigit()):
                self.broken = True
                raise ForwardError(f"{self.spec.canonical}: garbled reply {line[:80]!r}")
            texts.append(line[4:])
            if len(line) == 3 or line[3] != "-":
                code = int(line[:3])
                return Reply(code, "\n".join(texts) if lines else " ".join(texts))

    async def command(self, line: str) -> Reply:
        await self.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return await self.reply()

    def _mail_params(self, msg: Outgoing) -> list[str]:
        out = []
        for p in msg.mail_params:
            key = p.split("=", 1)[0].upper()
            if key == "BODY" and "8BITMIME" in self.ext:
                out.append(p)
            elif key in ("RET", "ENVID") and "DSN" in self.ext:
                out.append(p)
            elif key == "SMTPUTF8" and "SMTPUTF8" in self.ext:
                out.append(p)
        if "SIZE" in self.ext:
            out.append(f"SIZE={len(msg.data)}")
        return out

    async def send(self, msg: Outgoing) -> dict[str, Reply]:
        try:
            return await self._send(msg)
        except BaseException:
            self.broken = True  # cancelled or failed mid-transaction: never reuse this session
            raise

    def _xforward_accepted(self, r: Reply) -> None:
        if not r.ok:
            raise ForwardError(f"{self.spec.canonical} refused XFORWARD: {r}")

    async def _send(self, msg: Outgoing) -> dict[str, Reply]:
        """One transaction.  Returns the reply for each recipient; raises ForwardError when the
        outcome is unknown (the caller must then answer 4xx for every recipient)."""
        self.used += 1
        self.data_sent = False
        if "SMTPUTF8" in msg.mail_params and "SMTPUTF8" not in self.ext:
            # RFC 6531: such a message must not be downgraded silently; the MTA keeps it.
            no = Reply(451, "4.5.0 next hop does not offer SMTPUTF8")
            return {rc.address: no for rc in msg.recipients}
        dsn = "DSN" in self.ext
        pipelining = "PIPELINING" in self.ext
        xforward = ""
        if msg.xforward and "XFORWARD" in self.ext:
            allowed = set(self.ext["XFORWARD"].upper().split())
            attrs = [f"{k}={v}" for k, v in msg.xforward.items() if k in allowed]
            if attrs:
                xforward = "XFORWARD " + " ".join(attrs)
        if xforward and not pipelining:
            self._xforward_accepted(await self.command(xforward))
        params = self._mail_params(msg)
        cmds = [f"MAIL FROM:<{msg.sender}>" + "".join(" " + p for p in params)]
        for rc in msg.recipients:
            extra = "".join(" " + p for p in rc.params if dsn and p.split("=", 1)[0].upper() in ("NOTIFY", "ORCPT"))
            cmds.append(f"RCPT TO:<{rc.address}>{extra}")
        if pipelining:
            # XFORWARD "may be pipelined when the server supports ESMTP command pipelining"
            # (Postfix's XFORWARD_README): one round trip for the whole envelope.
            batch = ([xforward] if xforward else []) + cmds + ["DATA"]
            await self.write("".join(c + "\r\n" for c in batch).encode("utf-8", "surrogateescape"))
            if xforward:
                # Refused, the DATA of this batch may already be open: send() marks the session
                # broken, so it is dropped before any final dot and nothing is delivered.
                self._xforward_accepted(await self.reply())
            replies = [await self.reply() for _ in cmds]
        else:
            replies = []
            for c in cmds:
                replies.append(await self.command(c))
                if not replies[0].ok:
                    break
        mail = replies[0]
        results: dict[str, Reply] = {}
        if not mail.ok:
            for rc in msg.recipients:
                results[rc.address] = mail
            if pipelining:
                await self.reply()  # the DATA reply (503)
            await self.command("RSET")
            return results
        accepted = []
        for rc, r in zip(msg.recipients, replies[1:], strict=True):
            results[rc.address] = r
            if r.ok:
                accepted.append(rc.address)
        data_reply = await self.reply() if pipelining else None
        if accepted and msg.all_or_nothing and len(accepted) < len(msg.recipients):
            aborted = Reply(451, "4.3.0 not sent: another recipient of this message was refused")
            for a in accepted:
                results[a] = aborted
            accepted = []
        if not accepted:
            if data_reply is not None and data_reply.code == 354:
                # DATA was already accepted (pipelining): the only way to abandon it without
                # delivering anything is to drop the connection before the final dot.
                self.broken = True
                await self.close(polite=False)
                return results
            await self.command("RSET")
            return results
        if data_reply is None:
            data_reply = await self.command("DATA")
        if data_reply.code != 354:
            for a in accepted:
                results[a] = data_reply
            await self.command("RSET")
            return results
        self.data_sent = True
        if isinstance(msg.data, FileBody):
            # A big unchanged copy is read from the spool and stuffed chunk by chunk.
            stuffer = DotStuffer()
            for chunk in msg.data.chunks():
                out = stuffer.feed(chunk)
                if out:
                    await self.write(out)
            await self.write(stuffer.close())
        else:
            await self.write(dot_stuff(msg.data))
        if self.lmtp:
            for a in accepted:
                results[a] = await self.reply()
        else:
            final = await self.reply()
            for a in accepted:
                results[a] = final
        return results

    async def close(self, polite: bool = True) -> None:
        if self.writer is not None:
            if polite and not self.broken:
                with contextlib.suppress(ForwardError):
                    await asyncio.wait_for(self.command("QUIT"), min(self.timeout, 5))
            with contextlib.suppress(Exception):
                self.writer.close()
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        self.writer = None


class QmailQueue:
    """``qmail:(path)``: run the original qmail-queue per message (qmail-queue(8))."""

    def __init__(self, spec: MailerSpec, timeout: float) -> None:
        prog = spec.argv[0]
        # The guide's own example is ForwardMailer=qmail:(/var/qmail/bin/qmail-queue), but after
        # 4.4.2 that path is smtpscanner itself: hand over to the original, queue.kav55, instead.
        if os.path.basename(prog) == "qmail-queue":
            original = os.path.join(os.path.dirname(prog), "queue.kav55")
            if os.path.exists(original):
                spec = MailerSpec.parse(f"{spec.proto}:({shlex.join((original, *spec.argv[1:]))})")
        self.spec = spec
        self.timeout = timeout

    @staticmethod
    def envelope(sender: str, recipients: list[str]) -> bytes:
        return (b"F" + sender.encode("utf-8", "surrogateescape") + b"\0"
                + b"".join(b"T" + r.encode("utf-8", "surrogateescape") + b"\0" for r in recipients) + b"\0")

    def _run(self, msg: Outgoing) -> int:
        env_r, env_w = os.pipe()
        try:
            proc = subprocess.Popen(list(self.spec.argv), stdin=subprocess.PIPE, stdout=env_r, close_fds=True)
        except OSError as exc:
            os.close(env_r)
            os.close(env_w)
            raise ForwardError(f"cannot run {self.spec.canonical}: {exc}") from None
        os.close(env_r)
        try:
            assert proc.stdin is not None
            try:
                proc.stdin.write(msg.data.replace(b"\r\n", b"\n"))
                proc.stdin.close()
                with os.fdopen(env_w, "wb") as fh:
                    env_w = -1
                    fh.write(self.envelope(msg.sender, [r.address for r in msg.recipients]))
            except BrokenPipeError:
                pass  # the exit code tells what happened
            return proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ForwardError(f"{self.spec.canonical} timed out") from None
        finally:
            if env_w >= 0:
                os.close(env_w)

    async def send(self, msg: Outgoing) -> dict[str, Reply]:
        code = await asyncio.to_thread(self._run, msg)
        if code == 0:
            reply = Reply(250, "queued by qmail-queue")
        elif 11 <= code <= 40:  # qmail-queue(8): permanent failures
            reply = Reply(554, f"qmail-queue permanent failure (exit {code})")
        else:
            raise ForwardError(f"{self.spec.canonical} failed temporarily (exit {code})")
        return {r.address: reply for r in msg.recipients}


class ForwardMailer:
    """Connections to the next hop, pooled when the transport allows reuse (TCP)."""

    def __init__(self, spec: str | MailerSpec, timeout: float = 60.0, helo: str = "localhost",
                 pool_size: int = 16, max_uses: int = 500) -> None:
        self.spec = spec if isinstance(spec, MailerSpec) else MailerSpec.parse(spec)
        self.timeout = timeout
        self.helo = helo
        self.pool_size = pool_size
        self.max_uses = max_uses
        self._idle: list[Connection] = []

    @contextlib.asynccontextmanager
    async def session(self):  # type: ignore[no-untyped-def]
        """A connection for the messages of one scanned mail (notifications and copies)."""
        if self.spec.proto == "qmail":
            yield QmailQueue(self.spec, self.timeout)
            return
        conn = _ReusableSession(self)
        try:
            yield conn
        finally:
            await conn.release()

    async def acquire(self) -> tuple[Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.broken:
                return conn, True
            await conn.close(polite=False)
        conn = Connection(self.spec, self.timeout, self.helo)
        try:
            await conn.open()
        except ForwardError:
            await conn.close(polite=False)
            raise
        return conn, False

    async def give_back(self, conn: Connection) -> None:
        if (conn.broken or conn.spec.argv or len(self._idle) >= self.pool_size or conn.used >= self.max_uses):
            await conn.close(polite=not conn.broken)
        else:
            self._idle.append(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


class _ReusableSession:
    def __init__(self, mailer: ForwardMailer) -> None:
        self.mailer = mailer
        self.conn: Connection | None = None

    async def send(self, msg: Outgoing) -> dict[str, Reply]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn, reused = await self.mailer.acquire()
            else:
                reused = True
            try:
                return await self.conn.send(msg)
            except ForwardError:
                conn, self.conn = self.conn, None
                await conn.close(polite=False)
                # Only a reused connection that died before DATA is retried (it was idle-closed).
                if attempt or not reused or conn.data_sent:
                    raise
        raise ForwardError("unreachable")  # pragma: no cover

    async def release(self) -> None:
        if self.conn is not None:
            await self.mailer.give_back(self.conn)
            self.conn = None
