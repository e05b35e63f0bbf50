"""How smtpscanner takes mail in (guide 2.1, 4.4): a standing daemon on ``ListenAddress`` (one
event loop, or several pre-forked ones under :mod:`runtime.prefork`), or one session on
stdin/stdout when the MTA spawns it.  The command line that chooses between them is
:mod:`runtime.filter.main`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime import readiness
from runtime.config import ConfigError, KavConfig, Message, load_config
from runtime.config.values import ListenAddress
from runtime.filter.reloadstate import ReloadState
from runtime.filter.smtpd import FilterHandler, KavSMTP, session_class
from runtime.filter.wiring import FilterParts, build
from runtime.prefork import (
    AddressInUse,
    StartupError,
    Supervisor,
    clean_stale_pid,
    clean_stale_socket,
    listen_unix,
    while_in_use,
    write_pid,
)
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


# -- configuration reload (SIGHUP) -----------------------------------------------------------
#: What a reload cannot change: the listening socket is bound once, and the pid file is where the
#: console found this daemon.  A change is reported (log line, state file, console) and waits for
#: a restart; everything else applies to the next connection.
RESTART_ONLY = (("smtpscan.general", "ListenAddress"), ("smtpscan.general", "PidFile"))


def pid_file(cfg: KavConfig, log: EventLog) -> Path | None:
    """Claim ``[smtpscan.general] PidFile`` for this daemon: refused next to a live smtpscanner that
    owns it, a dead one's file replaced.  A directory that does not exist (a daemon started by
    hand, outside the packages' /run/kav4mailservers) means no pid file: logged, not fatal, since
    mail flows without it; only kavconsole's reload needs it."""
    where = str(cfg.get("smtpscan.general", "PidFile") or "")
    if not where:
        return None
    path = Path(where)
    if not path.parent.is_dir():
        log.warning(f"no pid file: {path.parent} does not exist ([smtpscan.general] PidFile); kavconsole cannot "
                    "ask this smtpscanner to reload")
        return None
    clean_stale_pid(path, "smtpscanner", (b"smtpscanner", b"runtime.filter"), log)
    try:
        write_pid(path)
    except OSError as exc:
        log.warning(f"no pid file: {path}: {exc.strerror} ([smtpscan.general] PidFile)")
        return None
    return path


def remove_pid_file(pid_path: Path | None) -> None:
    if pid_path is None:
        return
    for p in (pid_path, ReloadState.path_for(pid_path)):
        with contextlib.suppress(OSError):
            p.unlink()


def load_for_reload(config_path: str, running: KavConfig, log: EventLog,
                    processes: int) -> tuple[KavConfig, FilterParts, list[str]]:
    """Read and check the configuration file again, build what a new generation is made of (a
    value the parts refuse is caught here, not in a worker), and take the event log's new
    settings (a ReportFileName that cannot be opened is refused, the log left as it was): raises
    :class:`ConfigError` naming file, line and key.  Also returns the changed settings that wait
    for a restart."""
    cfg = load_config(config_path)
    try:
        parts = build(cfg, log, processes)
        log.reconfigure(cfg, "smtpscan.report")
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError([Message(config_path, None, None, None, f"cannot be used: {exc}")]) from None
    restart = [f"[{sec}] {key}" for sec, key in RESTART_ONLY if cfg.get(sec, key) != running.get(sec, key)]
    return cfg, parts, restart


def one_line_error(exc: ConfigError) -> str:
    return "; ".join(str(m) for m in exc.messages) or str(exc)


def attempt_reload(state: ReloadState, running: KavConfig, log: EventLog, processes: int,
                   pid_path: Path | None) -> tuple[KavConfig, FilterParts] | None:
    """One SIGHUP, in either standing mode: the new configuration and parts, with ``state``
    advanced to the next generation (the caller switches to them, then :func:`reloaded`); or
    None when the reload cannot happen: the running generation stays and one log line says why
    (file, line and key for an invalid file)."""
    log.reopen()
    state.attempts += 1
    try:
        cfg, parts, restart = load_for_reload(state.config, running, log, processes)
    except ConfigError as exc:
        why = one_line_error(exc)
    except Exception as exc:  # noqa: BLE001 - the daemon (the pre-fork master) must outlive any reload
        why = f"{type(exc).__name__}: {exc}"
    else:
        state.generation += 1
        state.result, state.message, state.restart_needed = "reloaded", "", restart
        state.loaded_at = time.time()
        return cfg, parts
    state.result, state.message, state.restart_needed = "refused", why, []
    log.error(reload_line(state))
    state.write(pid_path)
    return None


def reloaded(state: ReloadState, log: EventLog, pid_path: Path | None) -> None:
    log.info(reload_line(state))
    state.write(pid_path)


def reload_line(state: ReloadState) -> str:
    """The event log's line for a reload; the console shows the same words."""
    if state.result == "refused":
        return (f"SIGHUP: reload refused, still serving generation {state.generation} of the previous "
                f"configuration: {state.message}")
    line = f"SIGHUP: configuration {state.config} reloaded: generation {state.generation} serves new connections"
    if state.restart_needed:
        line += f"; {', '.join(state.restart_needed)} changed: takes effect at the next restart"
    return line


# -- standing daemon ---------------------------------------------------------------------
def bind(listen: ListenAddress, log: EventLog | None = None) -> socket.socket:
    """The listening socket; an address in use is tried again a few times (the last workers of
    a killed smtpscanner release it within moments), then refused with the reason."""
    if listen.kind == "unix":
        path = Path(listen.path)
        # a killed instance's socket goes; a live instance's is refused
        while_in_use(lambda: clean_stale_socket(path), "smtpscanner", log)
        # the MTA (another user) must be able to connect; like aveserver's LocalSocketPermission default
        sock = listen_unix(path, 0o666, backlog=512)
    else:
        sock = while_in_use(lambda: _listen_inet(listen), "smtpscanner", log)
    sock.setblocking(False)
    return sock


def _listen_inet(listen: ListenAddress) -> socket.socket:
    try:
        sock = socket.create_server((listen.host, listen.port), reuse_port=False,
                                    family=socket.AF_INET6 if ":" in listen.host else socket.AF_INET)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"cannot listen on {listen}: {exc.strerror}") from exc
        raise StartupError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    sock.listen(512)
    return sock


class PreforkFilter(Supervisor):
    """smtpscanner's pre-fork master: the one skeleton (:class:`runtime.prefork.Supervisor`) plus
    the SIGHUP reload.  The master re-reads and checks the file and builds a trial set of parts;
    only then does it fork a new generation of workers on the new configuration and retire the
    old one (SIGUSR2): a retired worker stops accepting and serves its open sessions to their
    end under the configuration they started with, so no message is cut or handled twice.  A
    refused reload leaves the workers alone (they reopen their logs)."""

    def __init__(self, cfg: KavConfig, log: EventLog, listen: ListenAddress, processes: int,
                 config_path: str, sock: socket.socket, pid_path: Path | None) -> None:
        owned = (Path(listen.path),) if listen.kind == "unix" else ()
        super().__init__("smtpscanner", log, self.serve, processes, on_hup=self.reload,
                         owned=owned + ((pid_path, ReloadState.path_for(pid_path)) if pid_path else ()))
        self.cfg, self.listen, self.sock, self.pid_path = cfg, listen, sock, pid_path
        self.state = ReloadState(os.getpid(), config_path)

    def serve(self) -> int:
        return run_loop(serve_daemon(self.cfg, self.log, self.listen, sock=self.sock, processes=self.size,
                                     generation=self.state.generation))

    def reload(self) -> None:
        self.signal_workers(signal.SIGHUP)  # logrotate's HUP reaches the workers, reload or not
        got = attempt_reload(self.state, self.cfg, self.log, self.size, self.pid_path)
        if got is None:
            return
        self.cfg = got[0]  # the parts are a trial: the new workers build their own after the fork
        self.new_generation(signal.SIGUSR2)
        reloaded(self.state, self.log, self.pid_path)


def serve_prefork(cfg: KavConfig, log: EventLog, listen: ListenAddress, processes: int,
                  config_path: str) -> int:
    """Several event loops on one listening socket: a Python process uses one core, and the
    per-message work (MIME, SMTP both ways) is CPU bound.  The parent only supervises."""
    sock = bind(listen, log)
    try:
        pid_path = pid_file(cfg, log)
        master = PreforkFilter(cfg, log, listen, processes, config_path, sock, pid_path)

        def ready() -> None:
            master.state.write(pid_path)  # only now: its SIGHUP handler is in place
            print(f"smtpscanner: {processes} processes on {listen}", file=sys.stderr, flush=True)
            readiness.ready(f"{processes} processes on {listen}")

        return master.run(ready=ready)
    finally:
        sock.close()


@dataclass
class Generation:
    """One configuration's worth of serving parts.  A session keeps the generation it was accepted
    under until it closes (the EHLO it was given and every message it carries agree); an old
    generation's connection pools close when its last session does."""

    number: int
    cfg: KavConfig
    parts: FilterParts
    handler: FilterHandler = field(init=False)
    session: type[KavSMTP] = field(init=False)
    sessions: int = 0

    def __post_init__(self) -> None:
        self.handler = FilterHandler(self.parts.processor, self.parts.features.lmtp)
        self.session = session_class(self.parts.features)


class FilterDaemon:
    """The serving side of one process: the single-process daemon, or one pre-forked worker.

    Single process: SIGHUP re-reads the file and, when it is valid, makes a new
    :class:`Generation` that serves every connection accepted from then on; sessions already
    open finish under their own.  Pre-forked worker: the master reloads (new workers), so SIGHUP
    only reopens the log and SIGUSR2 retires the worker (stop accepting, serve the open sessions
    to their end, exit)."""

    def __init__(self, cfg: KavConfig, log: EventLog, listen: ListenAddress, processes: int,
                 generation: int) -> None:
        self.log, self.listen, self.processes = log, listen, processes
        self.current = Generation(generation, cfg, build(cfg, log, processes))
        self.live: list[Generation] = [self.current]
        self.hostname = socket.getfqdn() or "localhost"  # once: a resolver lookup per connection blocked the loop
        self.stop = asyncio.Event()
        self.retiring = False
        self.pid_path: Path | None = None
        self.state: ReloadState | None = None
        self.closing: set[asyncio.Task[None]] = set()
        self.server: asyncio.AbstractServer | None = None

    def factory(self) -> KavSMTP:
        g = self.current
        proto = g.session(g.handler, g.parts.features, hostname=self.hostname, ident=IDENT)
        g.sessions += 1
        proto.closed.add_done_callback(lambda _f: self._session_done(g))
        return proto

    def _session_done(self, g: Generation) -> None:
        g.sessions -= 1
        if g.sessions == 0 and g is not self.current:
            self._retire(g)
        if self.retiring and not any(x.sessions for x in self.live):
            self.stop.set()

    def _retire(self, g: Generation) -> None:
        if g in self.live and g.sessions == 0:
            self.live.remove(g)
            task = asyncio.get_running_loop().create_task(g.parts.close())
            self.closing.add(task)
            task.add_done_callback(self.closing.discard)

    def active(self) -> int:
        return sum(g.handler.active for g in self.live)

    def reload(self) -> None:
        """SIGHUP in the single-process daemon (on the event loop, between callbacks: no message
        is half-way through a configuration change)."""
        assert self.state is not None
        old = self.current
        got = attempt_reload(self.state, old.cfg, self.log, self.processes, self.pid_path)
        if got is None:
            return
        self.current = Generation(self.state.generation, *got)
        self.live.append(self.current)
        self._retire(old)  # at once when no session holds it
        reloaded(self.state, self.log, self.pid_path)

    def retire(self) -> None:
        """SIGUSR2 from the master after a reload: stop taking connections, finish the open ones."""
        self.log.reopen()
        self.retiring = True
        if self.server is not None:
            self.server.close()  # this worker's copy of the listening socket: the new generation accepts
        if not any(g.sessions for g in self.live):
            self.stop.set()


async def serve_daemon(cfg: KavConfig, log: EventLog, listen: ListenAddress, sock: socket.socket | None = None,
                       processes: int = 1, config_path: str | None = None, generation: int = 1) -> int:
    """``sock`` given: a pre-forked worker on its master's socket; otherwise the single-process
    daemon, which binds, keeps the pid file and reloads ``config_path`` on SIGHUP."""
    daemon = FilterDaemon(cfg, log, listen, processes, generation)
    proc, features = daemon.current.parts.processor, daemon.current.parts.features
    await proc.licence.at_start(os.getppid() if sock is not None else os.getpid())  # 5.4.1, 5.4.2
    loop = asyncio.get_running_loop()

    owner = sock is None
    listener = bind(listen, log) if sock is None else sock
    if listener.family == socket.AF_UNIX:
        server = await loop.create_unix_server(daemon.factory, sock=listener)
    else:
        server = await loop.create_server(daemon.factory, sock=listener)
    daemon.server = server
    unix_path = Path(listen.path) if listen.kind == "unix" and owner else None
    if owner:
        try:
            daemon.pid_path = pid_file(cfg, log)
        except StartupError:
            server.close()
            raise
        daemon.state = ReloadState(os.getpid(), str(config_path))
    stop = daemon.stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if owner and config_path is not None:
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    else:
        loop.add_signal_handler(signal.SIGHUP, log.reopen)
        loop.add_signal_handler(signal.SIGUSR2, daemon.retire)
    if daemon.state is not None:
        daemon.state.write(daemon.pid_path)  # only now: the SIGHUP handler is in place
    proto = "LMTP" if features.lmtp else "SMTP"
    log.info(f"smtpscanner {os.getpid()}: {proto} on {listen}, forwarding to {proc.mailer.spec.canonical}"
             + (f" (generation {generation})" if generation > 1 else ""))
    print(f"smtpscanner: {proto} on {listen}", file=sys.stderr, flush=True)
    if owner:
        readiness.ready(f"{proto} on {listen}")
    await stop.wait()
    server.close()
    # Finish the messages being processed; a session idle between messages can simply be dropped
    # (nothing unacknowledged is lost: the MTA still holds it).  A retired worker gets here only
    # once its sessions have closed.
    for _ in range(600):
        if daemon.active() == 0:
            break
        await asyncio.sleep(0.1)
    for g in daemon.live:
        await g.parts.close()
    if daemon.closing:
        await asyncio.gather(*daemon.closing, return_exceptions=True)
    if unix_path is not None:
        with contextlib.suppress(OSError):
            unix_path.unlink()
    if owner:
        remove_pid_file(daemon.pid_path)
    log.info(f"smtpscanner {os.getpid()}: " + ("retired after a reload" if daemon.retiring else "stopped"))
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
