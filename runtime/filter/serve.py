"""How smtpscanner takes mail in (guide 2.1, 4.4): a standing daemon on ``ListenAddress`` (one
event loop, or several pre-forked ones under :mod:`runtime.prefork`), or one session on
stdin/stdout when the MTA spawns it.  The command line that chooses between them is
:mod:`runtime.filter.main`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import sys
import threading
from pathlib import Path

from runtime.config import KavConfig
from runtime.config.values import ListenAddress
from runtime.filter.smtpd import FilterHandler, KavSMTP, session_class
from runtime.filter.wiring import build
from runtime.prefork import Supervisor, clean_stale_socket
from runtime.report import EventLog

IDENT = "kav4mailservers smtpscanner"


def run_loop(coro) -> int:  # noqa: ANN001
    """asyncio.run, on uvloop when it is installed (the event loop is a large share of the
    per-message cost); plain asyncio otherwise. Through ``asyncio.Runner(loop_factory=...)``, not
    ``uvloop.run``: Debian bookworm's python3-uvloop is 0.17, which has no ``run`` (added in 0.18),
    and smtpscanner must not fail to start because an admin installed the Debian package."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# -- standing daemon ---------------------------------------------------------------------
def bind(listen: ListenAddress) -> socket.socket:
    if listen.kind == "unix":
        path = Path(listen.path)
        clean_stale_socket(path)  # a killed instance's socket goes; a live instance's is refused
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        # the MTA (another user) must be able to connect; like aveserver's LocalSocketPermission default
        os.chmod(path, 0o666)  # noqa: S103
    else:
        sock = socket.create_server((listen.host, listen.port), reuse_port=False,
                                    family=socket.AF_INET6 if ":" in listen.host else socket.AF_INET)
    sock.listen(512)
    sock.setblocking(False)
    return sock


def serve_prefork(cfg: KavConfig, log: EventLog, listen: ListenAddress, processes: int) -> int:
    """Several event loops on one listening socket: a Python process uses one core, and the
    per-message work (MIME, SMTP both ways) is CPU bound.  The parent only supervises."""
    sock = bind(listen)

    def work() -> int:
        return run_loop(serve_daemon(cfg, log, listen, sock=sock, processes=processes))

    def on_hup() -> None:
        log.reopen()
        supervisor.signal_workers(signal.SIGHUP)

    owned = (Path(listen.path),) if listen.kind == "unix" else ()
    supervisor = Supervisor("smtpscanner", log, work, processes, on_hup=on_hup, owned=owned)
    try:
        return supervisor.run(ready=lambda: print(f"smtpscanner: {processes} processes on {listen}",
                                                  file=sys.stderr, flush=True))
    finally:
        sock.close()


async def serve_daemon(cfg: KavConfig, log: EventLog, listen: ListenAddress, sock: socket.socket | None = None,
                       processes: int = 1) -> int:
    parts = build(cfg, log, processes)
    proc, features = parts.processor, parts.features
    await proc.licence.at_start(os.getppid() if sock is not None else os.getpid())  # 5.4.1, 5.4.2
    handler = FilterHandler(proc, features.lmtp)
    loop = asyncio.get_running_loop()

    session = session_class(features)

    hostname = socket.getfqdn() or "localhost"  # once: a resolver lookup per connection blocked the loop

    def factory() -> KavSMTP:
        return session(handler, features, hostname=hostname, ident=IDENT)

    owner = sock is None
    listener = bind(listen) if sock is None else sock
    if listener.family == socket.AF_UNIX:
        server = await loop.create_unix_server(factory, sock=listener)
    else:
        server = await loop.create_server(factory, sock=listener)
    unix_path = Path(listen.path) if listen.kind == "unix" and owner else None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, log.reopen)
    proto = "LMTP" if features.lmtp else "SMTP"
    log.info(f"smtpscanner {os.getpid()}: {proto} on {listen}, forwarding to {proc.mailer.spec.canonical}")
    print(f"smtpscanner: {proto} on {listen}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    # Finish the messages being processed; a session idle between messages can simply be dropped
    # (nothing unacknowledged is lost: the MTA still holds it).
    for _ in range(600):
        if handler.active == 0:
            break
        await asyncio.sleep(0.1)
    await parts.close()
    if unix_path is not None:
        with contextlib.suppress(OSError):
            unix_path.unlink()
    log.info(f"smtpscanner {os.getpid()}: stopped")
    return 0


# -- one session on stdin/stdout -----------------------------------------------------------
async def serve_stdio(cfg: KavConfig, log: EventLog) -> int:
    parts = build(cfg, log)
    proc, features = parts.processor, parts.features
    proc.client.keep_idle = False
    handler = FilterHandler(proc, features.lmtp)
    loop = asyncio.get_running_loop()
    proto = session_class(features)(handler, features, hostname=socket.getfqdn() or "localhost", ident=IDENT)
    if stat.S_ISSOCK(os.fstat(0).st_mode) and _same_socket(0, 1):
        sock = socket.socket(fileno=os.dup(0))
        await loop.connect_accepted_socket(lambda: proto, sock)
    else:
        ours, theirs = socket.socketpair()
        _pump(theirs)
        await loop.connect_accepted_socket(lambda: proto, ours)
    await proto.closed
    await parts.close()
    return 0


def _same_socket(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _pump(sock: socket.socket) -> None:
    """Bridge fd 0/1 (pipes from the MTA) to one end of a socket pair served by aiosmtpd."""

    def inbound() -> None:
        try:
            while data := os.read(0, 65536):
                sock.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    def outbound() -> None:
        try:
            while data := sock.recv(65536):
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]
        except OSError:
            pass

    threading.Thread(target=inbound, daemon=True).start()
    threading.Thread(target=outbound, daemon=True).start()
