"""Real parts for the filter tests: aveserver and smtpscanner as processes, a real SMTP sink.

The sink is an aiosmtpd server on a loopback port that records every transaction (envelope and
bytes) and can be told to misbehave the ways a next hop does: refuse recipients (4xx/5xx), drop
the connection after the message data, or stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as AioSMTP

from tests.support.procs import can_connect, stop, wait_for
from tests.support.procs import children as _children

REPO = Path(__file__).resolve().parents[2]
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PREFIXES = {"clean": None, "EICAR": b"", "CORR": b"CORR-", "SUSP": b"SUSP-", "WARN": b"WARN-",
            "ERRO": b"ERRO-", "CURE": b"CURE-", "DELE": b"DELE-"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]






def ini(sections: dict[str, dict[str, object]]) -> str:
    out = []
    for name, kv in sections.items():
        out.append(f"[{name}]")
        for k, v in kv.items():
            if isinstance(v, bool):
                v = "yes" if v else "no"
            out.append(f"{k}={v}")
        out.append("")
    return "\n".join(out)


def mail(subject: str = "hello", attachments: dict[str, bytes] | None = None, body: str = "Hi there.\n",
         sender: str = "alice@example.com", to: str = "bob@example.com") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '.')}.{time.time_ns()}@example.com>"
    msg.set_content(body)
    for name, data in (attachments or {}).items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))  # what an MTA sends


def eicar_mail(kind: str, subject: str | None = None, **kw: object) -> bytes:
    prefix = PREFIXES[kind]
    if prefix is None:
        return mail(subject or "clean", {"report.txt": b"quarterly numbers\n"}, **kw)  # type: ignore[arg-type]
    return mail(subject or f"{kind} test", {f"{kind.lower()}.com": prefix + EICAR}, **kw)  # type: ignore[arg-type]


@dataclass
class Got:
    sender: str
    rcpts: list[str]
    data: bytes
    mail_options: list[str]
    rcpt_options: list[str]

    @property
    def msg(self) -> Message:
        return email.message_from_bytes(self.data, policy=email.policy.compat32)

    @property
    def notice(self) -> str:
        # headers only: a delivered message may be nested too deep for the full parser
        return str(BytesHeaderParser(policy=email.policy.compat32).parsebytes(self.data).get("X-Anti-Virus-Notice", ""))


class _SinkSMTP(AioSMTP):
    async def smtp_MAIL(self, arg):  # noqa: ANN001, ANN201 - accept the null sender and DSN params
        params = arg.split()[1:] if arg else []
        self.envelope.mail_from = arg.split()[0][5:].strip("<>") if arg else ""
        self.envelope.mail_options = params
        self.envelope._has_mail = True
        await self.push("250 OK")

    async def smtp_RCPT(self, arg):  # noqa: ANN001, ANN201
        if not getattr(self.envelope, "_has_mail", False):
            await self.push("503 need MAIL")
            return
        addr = arg.split()[0][3:].strip("<>")
        status = await self.event_handler.rcpt(addr)
        if status.startswith("250"):
            self.envelope.rcpt_tos.append(addr)
            self.envelope.rcpt_options.extend(arg.split()[1:])
        await self.push(status)

    async def smtp_EHLO(self, hostname):  # noqa: ANN001, ANN201
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        for line in ("250-sink", "250-PIPELINING", "250-8BITMIME", "250-DSN", "250-SIZE 100000000",
                     "250-XFORWARD NAME ADDR PROTO HELO", "250 SMTPUTF8"):
            await self.push(line)

    async def smtp_XFORWARD(self, arg):  # noqa: ANN001, ANN201
        self.event_handler.xforward.append(arg)
        # whether the envelope came in the same batch (the MAIL command already waiting behind it)
        self.event_handler.xforward_batched.append(b"MAIL FROM:" in bytes(self._reader._buffer))  # noqa: SLF001
        if self.event_handler.mode == "refuse_xforward":
            await self.push("550 5.7.1 XFORWARD not authorized")
            return
        await self.push("250 OK")


@dataclass
class Sink:
    """mode: ok | tempfail_rcpt | permfail_rcpt | drop_after_data | stall | tempfail_data | refuse_xforward;
    ``delay``: seconds each DATA waits before its answer (a message held in flight)."""

    port: int = 0
    mode: str = "ok"
    host: str = "127.0.0.1"  # another address where the sink stands for a host of its own (tests/scaleout)
    fail_rcpts: set[str] = field(default_factory=set)
    delay: float = 0.0
    receiving: int = 0  # DATA commands being answered right now
    got: list[Got] = field(default_factory=list)
    xforward: list[str] = field(default_factory=list)
    xforward_batched: list[bool] = field(default_factory=list)
    controller: Controller | None = None

    async def rcpt(self, addr: str) -> str:
        if self.mode == "tempfail_rcpt" or addr in self.fail_rcpts:
            return "450 4.2.0 try later"
        if self.mode == "permfail_rcpt":
            return "550 5.1.1 no such user"
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        if self.mode == "drop_after_data":
            server.transport.close()
            await asyncio.sleep(0.5)
            return "421 gone"
        if self.mode == "stall":
            await asyncio.sleep(30)
        if self.delay:
            self.receiving += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.receiving -= 1
        if self.mode == "tempfail_data":
            return "451 4.3.0 sink says later"
        self.got.append(Got(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                            list(envelope.mail_options), list(envelope.rcpt_options)))
        return "250 OK queued"

    def start(self) -> Sink:
        self.port = self.port or free_port()
        sink = self

        class C(Controller):
            def factory(self):  # noqa: ANN202
                # the limit its EHLO advertises (SIZE 100000000), not aiosmtpd's 32 MiB default
                return _SinkSMTP(sink, decode_data=False, enable_SMTPUTF8=True, data_size_limit=100000000)

        self.controller = C(self, hostname=self.host, port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def by_notice(self, role: str) -> list[Got]:
        return [g for g in self.got if g.notice.startswith(role)]

    def deliveries(self) -> list[Got]:
        return [g for g in self.got if not g.notice]


@dataclass
class Stack:
    """aveserver + smtpscanner processes under one scratch root."""

    root: Path
    sink: Sink
    port: int = 0
    ave: subprocess.Popen[bytes] | None = None
    scanner: subprocess.Popen[bytes] | None = None
    scanner_args: tuple[str, ...] = ()

    @property
    def conf(self) -> Path:
        return self.root / "kav4mailservers.conf"

    @property
    def sock(self) -> Path:
        return self.root / "run" / "aveserver"

    @property
    def temp(self) -> Path:
        return self.root / "spool"

    @property
    def log(self) -> Path:
        return self.root / "log" / "smtpscanner.log"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "smtpscanner.pid"

    def reload_state(self) -> dict[str, object]:
        """What smtpscanner published after its start or its last SIGHUP (its pid file's .state)."""
        import json

        path = self.pid_file.with_suffix(".state")
        return json.loads(path.read_text()) if path.exists() else {}

    def reload_scanner(self) -> dict[str, object]:
        """SIGHUP smtpscanner and wait for the reload it answers with (refused or not)."""
        assert self.scanner is not None
        before = int(self.reload_state().get("attempts", 0))
        self.scanner.send_signal(signal.SIGHUP)
        wait_for(lambda: int(self.reload_state().get("attempts", 0)) > before, what="smtpscanner's reload")
        return self.reload_state()

    def write(self, groups: dict[str, dict[str, object]], general: dict[str, object] | None = None,
              extra: dict[str, dict[str, object]] | None = None) -> None:
        self.port = self.port or free_port()
        for d in ("run", "log", "spool", "bases"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "bases" / "local.ndb").write_text("Test.Body.Sig:0:*:6b61763474657374{2-8}7369676e\n")
        sections: dict[str, dict[str, object]] = {
            "path": {"BasesPath": self.root / "bases", "LocalSocketPath": self.sock,
                     "AVSpidPATH": self.root / "run" / "aveserver.pid", "TempPath": self.temp,
                     "CachePath": self.root / "cache"},
            "aveserver.options": {"DetachFromTerminal": False, "Workers": 1, "User": "root"},
            "aveserver.report": {"ReportFileName": self.root / "log" / "aveserver.log"},
            "smtpscan.general": {"Protocol": "smtp", "ListenAddress": f"inet:127.0.0.1:{self.port}",
                                 "ForwardMailer": f"smtp:127.0.0.1:{self.sink.port}",
                                 "NotifyFromAddress": "kav@example.com", "PidFile": self.pid_file,
                                 **(general or {})},
            "smtpscan.limits": {"MaxCheckTime": 10},
            "smtpscan.report": {"ReportFileName": self.log, "ShowOk": True,
                                "AVStatistics": self.root / "log" / "smtpscanner.stat"},
        }
        for name, kv in (extra or {}).items():
            sections.setdefault(name, {}).update(kv)
        for name, kv in groups.items():
            sections[f"smtpscan.group:{name}"] = kv
        self.conf.write_text(ini(sections))

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(REPO))

    def start_ave(self) -> None:
        # stderr to a file, never an undrained pipe (a full pipe would stall the daemon)
        with open(self.root / "log" / "aveserver.err", "ab") as err:
            self.ave = subprocess.Popen([sys.executable, "-m", "runtime.engine.server", "-c", str(self.conf)],
                                        env=self.env(), stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: can_connect(str(self.sock)) or self.ave.poll() is not None, what="aveserver")
        assert self.ave.poll() is None, (self.root / "log" / "aveserver.err").read_text()

    def start_scanner(self) -> None:
        with open(self.root / "log" / "smtpscanner.err", "ab") as err:
            self.scanner = subprocess.Popen(
                [sys.executable, "-m", "runtime.filter.main", "-c", str(self.conf), "--daemon", *self.scanner_args],
                env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: can_connect(("127.0.0.1", self.port)) or self.scanner.poll() is not None,
                 what="smtpscanner")
        assert self.scanner.poll() is None, (self.root / "log" / "smtpscanner.err").read_text()

    def start(self) -> Stack:
        self.start_ave()
        self.start_scanner()
        return self

    def restart_scanner(self) -> None:
        _stop(self.scanner)
        self.start_scanner()

    def kill_ave(self) -> None:
        assert self.ave is not None
        for pid in _children(self.ave.pid):
            _kill(pid)
        _kill(self.ave.pid)
        self.ave.wait()

    def stop(self) -> None:
        _stop(self.scanner)
        _stop(self.ave)

    def send(self, data: bytes, sender: str = "alice@example.com", rcpts: list[str] | None = None,
             lmtp: bool = False) -> dict[str, tuple[int, bytes]]:
        """Send with smtplib; returns per-recipient (code, text) of the final answer."""
        rcpts = rcpts or ["bob@example.com"]
        if lmtp:
            with smtplib.LMTP("127.0.0.1", self.port) as c:
                c.ehlo_or_helo_if_needed()
                code, resp = c.mail(sender)
                assert code == 250, resp
                for r in rcpts:
                    code, resp = c.rcpt(r)
                    assert code == 250, resp
                code, resp = c.docmd("DATA")
                assert code == 354
                body = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
                c.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
                return {r: c.getreply() for r in rcpts}
        with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as c:
            c.ehlo()
            code, resp = c.mail(sender)
            assert code == 250, resp
            for r in rcpts:
                code, resp = c.rcpt(r)
                assert code == 250, resp
            code, resp = c.data(data)
            return {r: (code, resp) for r in rcpts}

    def spool_files(self) -> list[str]:
        return sorted(os.listdir(self.temp))

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""




def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    stop(proc, grace=20)


class FakeAve:
    """A stand-in at aveserver's socket that dies mid-scan (reads the request, closes) or hangs."""

    def __init__(self, path: Path, mode: str) -> None:
        import threading

        self.path = path
        self.mode = mode
        self.requests = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path.unlink(missing_ok=True)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            try:
                conn.recv(65536)
            except OSError:
                continue
            self.requests += 1
            if self.mode == "crash":
                conn.close()

    def stop(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def stacks(base: Path) -> Iterator[Callable[..., Stack]]:
    """``make(groups, general=..., extra=..., start=True)`` -> a Stack (started unless told) with its
    own sink, under ``base``; every one made is stopped, sink included, on leaving.  The one factory
    behind the ``make_stack`` fixtures of tests/filter and tests/license."""
    made: list[Stack] = []

    def make(groups: dict[str, dict[str, object]], general: dict[str, object] | None = None,
             extra: dict[str, dict[str, object]] | None = None, start: bool = True) -> Stack:
        sink = Sink().start()
        st = Stack(base / f"root{len(made)}", sink)
        made.append(st)
        st.write(groups, general, extra)
        if start:
            st.start()
        return st

    try:
        yield make
    finally:
        for st in made:
            st.stop()
            st.sink.stop()
