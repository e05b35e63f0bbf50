"""``smtpscanner``: the mail filter's entry point (guide 2.1, 4.4).

Modes, chosen by how it is started:

* standing daemon on ``[smtpscan.general] ListenAddress`` (``inet:host:port`` or ``unix:/path``);
* one session over stdin/stdout when the MTA spawns it (Postfix ``spawn``, Sendmail ``P=``, Exim
  ``lmtp`` transport ``command=``): chosen by ``--stdio``, ``ListenAddress=stdio``, or
  automatically when stdin is a socket or a pipe (so the guide's bare ``argv=.../smtpscanner``
  works);
* ``qmail-queue`` replacement (4.4.2): when called as ``qmail-queue`` or with ``qmail-queue``;
* ``quarantine list|show|release|delete`` for the administrator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path

from runtime.config import CONFIG_FILE, ConfigError, KavConfig, load_config
from runtime.engine import server as engine_server
from runtime.filter.avescan import AsyncAveClient
from runtime.filter.forward import ForwardMailer
from runtime.filter.process import Processor
from runtime.filter.smtpd import Features, FilterHandler, KavSMTP
from runtime.filter.stats import Statistics
from runtime.filter.statstore import StatStore
from runtime.report import EventLog

CONFIG_ENV = "KAV_CONFIG"


def run_loop(coro) -> int:  # noqa: ANN001
    """asyncio.run, on uvloop when it is installed (the event loop is a large share of the
    per-message cost); plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def build(cfg: KavConfig, log: EventLog, processes: int = 1) -> tuple[Processor, Features]:
    limits = cfg.section("smtpscan.limits")
    gen = cfg.section("smtpscan.general")
    max_check = float(limits["MaxCheckTime"])
    # aveserver serves Workers x THREADS_PER_WORKER connections; keep two for other clients.
    workers = int(cfg.get("aveserver.options", "Workers")) or os.cpu_count() or 1
    per_worker = int(getattr(engine_server, "THREADS_PER_WORKER", 4))
    slots = max(1, min(int(limits["MaxScanners"]), (workers * per_worker - 2) // max(1, processes)))
    client = AsyncAveClient(cfg.get("path", "LocalSocketPath"), timeout=max_check, pool_size=slots)
    mailer = ForwardMailer(gen["ForwardMailer"], timeout=max_check, helo=socket.getfqdn() or "localhost")
    stats_path = cfg.get("smtpscan.report", "AVStatistics")
    store_path = cfg.get("console", "StatisticsStore")
    store = StatStore(store_path, int(cfg.get("console", "StatisticsKeepDays"))) if store_path else None
    stats = (Statistics(stats_path, cfg.get("smtpscan.report", "ReportFilePermission"), store)
             if stats_path or store else None)
    proc = Processor(cfg, log, client, mailer, stats)
    features = Features(
        lmtp=gen["Protocol"] == "lmtp",
        size=int(limits["MaxMessageSize"]),
        eightbit=bool(gen["EHLOsupport8BITMIME"]),
        dsn=bool(gen["EHLOsupportDSN"]),
        xforward=list(gen["EHLOattrsXFORWARD"]) if gen["EHLOsupportXFORWARD"] else None,
        smtputf8=bool(gen["EHLOsupportSMTPUTF8"]),
    )
    return proc, features


async def _close(proc: Processor) -> None:
    await proc.mailer.close()
    await proc.client.close()


# -- standing daemon ---------------------------------------------------------------------
def bind(listen: str) -> socket.socket:
    kind, _, where = listen.partition(":")
    if kind == "unix":
        path = Path(where)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # stale socket of a killed instance
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        # the MTA (another user) must be able to connect; like aveserver's LocalSocketPermission default
        os.chmod(path, 0o666)  # noqa: S103
    else:
        host, _, port = where.rpartition(":")
        sock = socket.create_server((host.strip("[]"), int(port)), reuse_port=False,
                                    family=socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
    sock.listen(512)
    sock.setblocking(False)
    return sock


def serve_prefork(cfg: KavConfig, log: EventLog, listen: str, processes: int) -> int:
    """Several event loops on one listening socket: a Python process uses one core, and the
    per-message work (MIME, SMTP both ways) is CPU bound.  The parent only supervises."""
    sock = bind(listen)
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            code = 1
            try:
                code = run_loop(serve_daemon(cfg, log, listen, sock=sock, processes=processes))
            finally:
                os._exit(code)
        children[pid] = slot

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def on_hup(_sig: int, _frame: object) -> None:
        log.reopen()
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    for slot in range(processes):
        spawn(slot)
    print(f"smtpscanner: {processes} processes on {listen}", file=sys.stderr, flush=True)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        if slot is not None and not stopping:
            log.error(f"smtpscanner worker {pid} exited ({status}); starting another")
            time.sleep(0.5)
            spawn(slot)
    sock.close()
    if listen.startswith("unix:"):
        with contextlib.suppress(OSError):
            os.unlink(listen.partition(":")[2])
    return 0


async def serve_daemon(cfg: KavConfig, log: EventLog, listen: str, sock: socket.socket | None = None,
                       processes: int = 1) -> int:
    proc, features = build(cfg, log, processes)
    await proc.licence.at_start(os.getppid() if sock is not None else os.getpid())  # 5.4.1, 5.4.2
    handler = FilterHandler(proc, features.lmtp)
    loop = asyncio.get_running_loop()

    def factory() -> KavSMTP:
        return KavSMTP(handler, features, hostname=socket.getfqdn() or "localhost", ident="kav4mailservers smtpscanner")

    owner = sock is None
    listener = bind(listen) if sock is None else sock
    if listener.family == socket.AF_UNIX:
        server = await loop.create_unix_server(factory, sock=listener)
    else:
        server = await loop.create_server(factory, sock=listener)
    unix_path = Path(listen.partition(":")[2]) if listen.startswith("unix:") and owner else None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, log.reopen)
    proto = "LMTP" if features.lmtp else "SMTP"
    log.info(f"smtpscanner {os.getpid()}: {proto} on {listen}, forwarding to {proc.mailer.spec}")
    print(f"smtpscanner: {proto} on {listen}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    # Finish the messages being processed; a session idle between messages can simply be dropped
    # (nothing unacknowledged is lost: the MTA still holds it).
    for _ in range(600):
        if handler.active == 0:
            break
        await asyncio.sleep(0.1)
    await _close(proc)
    if unix_path is not None:
        with contextlib.suppress(OSError):
            unix_path.unlink()
    log.info(f"smtpscanner {os.getpid()}: stopped")
    return 0


# -- one session on stdin/stdout -----------------------------------------------------------
def stdin_is_channel() -> bool:
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode)


async def serve_stdio(cfg: KavConfig, log: EventLog) -> int:
    proc, features = build(cfg, log)
    proc.client.keep_idle = False
    handler = FilterHandler(proc, features.lmtp)
    loop = asyncio.get_running_loop()
    proto = KavSMTP(handler, features, hostname=socket.getfqdn() or "localhost", ident="kav4mailservers smtpscanner")
    if stat.S_ISSOCK(os.fstat(0).st_mode) and _same_socket(0, 1):
        sock = socket.socket(fileno=os.dup(0))
        await loop.connect_accepted_socket(lambda: proto, sock)
    else:
        ours, theirs = socket.socketpair()
        _pump(theirs)
        await loop.connect_accepted_socket(lambda: proto, ours)
    await proto.closed
    await _close(proc)
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


# -- command line --------------------------------------------------------------------------
def _load(path: str) -> KavConfig:
    return load_config(path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.path.basename(sys.argv[0]) == "qmail-queue" and argv[:1] != ["qmail-queue"]:
        argv.insert(0, "qmail-queue")
    ap = argparse.ArgumentParser(prog="smtpscanner", description="Kaspersky Anti-Virus mail filter (guide 2.1, 6.1)")
    ap.add_argument("-c", "--config", default=os.environ.get(CONFIG_ENV, CONFIG_FILE),
                    help="configuration file (default %(default)s; env KAV_CONFIG)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="one session on stdin/stdout (spawned by the MTA)")
    mode.add_argument("--daemon", action="store_true", help="listen on ListenAddress even if stdin is a pipe")
    ap.add_argument("--listen", help="override [smtpscan.general] ListenAddress")
    ap.add_argument("--processes", type=int, default=1,
                    help="daemon: event-loop processes sharing the socket (default 1; more on many-core hosts)")
    sub = ap.add_subparsers(dest="command")
    sub.add_parser("qmail-queue", help="act as qmail-queue (message on fd 0, envelope on fd 1)")
    q = sub.add_parser("quarantine", help="list, show, release or delete quarantined messages")
    qs = q.add_subparsers(dest="qcmd", required=True)
    ql = qs.add_parser("list", help="one line per quarantined message")
    ql.add_argument("--path", help="quarantine directory (default: every group's QuarantinePath)")
    for name, helptext in (("show", "envelope, reason and headers"), ("release", "re-send to the original recipients"),
                           ("delete", "remove for good")):
        p = qs.add_parser(name, help=helptext)
        p.add_argument("id")
        p.add_argument("--path", help="quarantine directory")
        if name == "show":
            p.add_argument("--raw", action="store_true", help="print the whole message")
        if name == "release":
            p.add_argument("--keep", action="store_true", help="keep the entry after release")
    args = ap.parse_args(argv)
    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 55 if args.command == "qmail-queue" else 1
    if args.command == "quarantine":
        from runtime.filter.quarantine_cli import run

        return run(cfg, args)
    try:
        log = EventLog.from_config(cfg, "smtpscan.report")
    except OSError as exc:
        print(f"smtpscanner: cannot open event log: {exc}", file=sys.stderr)
        return 55 if args.command == "qmail-queue" else 1
    if args.command == "qmail-queue":
        from runtime.filter.qmailqueue import run_qmail_queue

        return run_qmail_queue(cfg, log)
    listen = args.listen or cfg.get("smtpscan.general", "ListenAddress")
    if args.stdio or listen == "stdio" or (not args.daemon and not args.listen and stdin_is_channel()):
        return run_loop(serve_stdio(cfg, log))
    processes = args.processes if args.processes > 0 else (os.cpu_count() or 1)
    if processes > 1:
        return serve_prefork(cfg, log, listen, processes)
    return run_loop(serve_daemon(cfg, log, listen))


if __name__ == "__main__":
    sys.exit(main())
