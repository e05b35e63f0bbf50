"""aveserver (guide 2.1, 6.4): the scanning daemon.

Process model: the master loads the configuration and the database, binds the sockets and forks a
pool of worker processes (``[aveserver.options] Workers``, 0 = one per CPU); scanning is CPU
bound, so each worker is a process, and each serves a few connections with threads.  Workers
inherit the compiled database copy-on-write.

Signals (6.4.1, 6.4.2): SIGHUP makes the master re-read the configuration and the database; only
when the new database loaded completely does it fork a new generation of workers and retire the
old one — retired workers stop accepting, keep serving their open connections until the clients
close them, then exit, so no connection is dropped and the listening socket never closes.  A bad
new database is refused and logged; the old workers keep serving.  SIGTERM: workers finish the
request in flight, the master removes the socket and the pid file.  A socket or pid file left
behind by ``kill -9`` is recognised as stale at the next start and removed.

The master is :class:`runtime.prefork.Supervisor` (shared with smtpscanner) plus what is
aveserver's own: the database and the reload into a new generation.  This module is aveserver's
entry point and the only one that loads the matcher (Hyperscan): nothing else imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import pwd
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime import readiness
from runtime.config import CONFIG_FILE, ConfigError, KavConfig, load_config
from runtime.prefork import (
    StartupError,
    Supervisor,
    clean_stale_pid,
    clean_stale_socket,
    listen_unix,
    resolve_user,
    scoreboard_path,
    survive_early_hup,
    while_in_use,
    write_pid,
)
from runtime.report import EventLog

from .bases import key_from_config, list_bases, list_viruses
from .capacity import SCANS_PER_WORKER, THREADS_PER_WORKER
from .engine import DatabaseError, Engine
from .limits import Limits
from .matcher import prefilter_hint, prefilter_name
from .protocol import Connection, ServerState, database_date


@dataclass
class ServerSettings:
    """The keys aveserver uses, read once per (re)load."""

    config: KavConfig
    bases: Path
    socket_path: Path
    socket_perm: int
    pid_path: Path
    detach: bool
    startup: str
    workers: int
    tcp_port: int
    tcp_addr: str
    stream_max: int
    limits: Limits
    user: str
    cache: Path

    @classmethod
    def from_config(cls, cfg: KavConfig) -> ServerSettings:
        opt = "aveserver.options"
        return cls(
            config=cfg,
            bases=Path(cfg.get("path", "BasesPath")),
            socket_path=Path(cfg.get("path", "LocalSocketPath")),
            socket_perm=cfg.get(opt, "LocalSocketPermission"),
            pid_path=Path(cfg.get("path", "AVSpidPATH")),
            detach=cfg.get(opt, "DetachFromTerminal"),
            startup=cfg.get(opt, "StartupMode"),
            workers=cfg.get(opt, "Workers") or os.cpu_count() or 1,
            tcp_port=cfg.get(opt, "ClamdTcpPort"),
            tcp_addr=cfg.get(opt, "ClamdTcpAddress"),
            stream_max=cfg.get(opt, "StreamMaxLength"),
            limits=Limits.from_config(cfg),
            user=cfg.get(opt, "User"),
            cache=Path(os.environ.get("KAV_ENGINE_CACHE") or Path(cfg.get("path", "CachePath")) / "engine"),
        )


def trusted_cache(path: Path, log: EventLog) -> Path | None:
    """The compiled-database cache directory, or None (no cache: slower start, same results).

    The master reads it as root and the blobs are deserialised, so a directory another account
    could write (a planted blob, a signature removed from the parsed form) is not used."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(path, follow_symlinks=False)
    except OSError as exc:
        log.warning(f"database cache {path} unusable ({exc.strerror}); compiling without a cache")
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        log.warning(f"database cache {path} is not a directory only this account can write; not used")
        return None
    return path


# -- stale files ----------------------------------------------------------------------------------
def clean_stale(settings: ServerSettings, log: EventLog) -> None:
    """Refuse to start next to a live aveserver; remove what a killed one left behind (6.4.2)."""
    clean_stale_pid(settings.pid_path, "aveserver", (b"aveserver", b"runtime.engine"), log)
    while_in_use(lambda: clean_stale_socket(settings.socket_path, log), "aveserver", log)


def bind_sockets(settings: ServerSettings, run_as: pwd.struct_passwd | None = None) -> list[socket.socket]:
    """Bind as root (when started so), then hand the UNIX socket to the account the workers serve
    as: owner that account, group its primary group (``filter`` for kluser), mode
    LocalSocketPermission (0660 by default, not the guide's 0666)."""
    settings.socket_path.parent.mkdir(parents=True, exist_ok=True)
    unix = listen_unix(settings.socket_path, settings.socket_perm,
                       (run_as.pw_uid, run_as.pw_gid) if run_as is not None else None)
    socks = [unix]
    if settings.tcp_port:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((settings.tcp_addr, settings.tcp_port))
        tcp.listen(128)
        socks.append(tcp)
    for s in socks:
        s.setblocking(False)
    return socks


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of a UNIX socket (SO_PEERCRED); None over TCP,
    where nobody can be trusted to be anyone."""
    if conn.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    return uid


# -- worker ---------------------------------------------------------------------------------------
class Worker:
    """One worker process: a few threads accept and serve connections."""

    def __init__(self, socks: list[socket.socket], engine: Engine, settings: ServerSettings, log: EventLog,
                 db_date: str, ask_master: Callable[[str], None], master_pid: int,
                 marking: Callable[[threading.BoundedSemaphore], object] = lambda sem: sem) -> None:
        self.socks = socks
        self.marking = marking  # the master's scoreboard: a held scan slot is a busy worker (issue 18)
        self.ask_master = ask_master
        self.master_pid = master_pid  # the parent it was forked from; another parent means orphaned
        self.engine = engine
        self.settings = settings
        self.log = log
        self.db_date = db_date
        self.retiring = False  # SIGUSR2 after a reload: stop accepting, keep open connections
        self.terminating = False  # SIGTERM: stop accepting, finish the request in flight

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGUSR2, self._on_retire)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        state = ServerState(
            engine=lambda: self.engine,
            log=self.log,
            stream_max=self.settings.stream_max,
            terminating=lambda: self.terminating,
            reload=lambda: self.ask_master("reload"),
            shutdown=lambda: self.ask_master("stop"),
            db_date=self.db_date,
            scan_slots=self.marking(threading.BoundedSemaphore(SCANS_PER_WORKER)),
        )
        threads = [threading.Thread(target=self._accept_loop, args=(state,), daemon=True)
                   for _ in range(THREADS_PER_WORKER)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        return 0

    def _on_term(self, _sig: int, _frame: object) -> None:
        self.terminating = True

    def _on_retire(self, _sig: int, _frame: object) -> None:
        self.retiring = True

    def _accept_loop(self, state: ServerState) -> None:
        while not (self.retiring or self.terminating):
            if os.getppid() != self.master_pid:  # the master was killed (kill -9): do not serve orphaned
                self.terminating = True
                return
            try:
                ready, _, _ = select.select(self.socks, [], [], 0.5)
            except (OSError, ValueError):
                return
            for ls in ready:
                if self.retiring or self.terminating:
                    return
                try:
                    conn, _addr = ls.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                conn.setblocking(True)
                try:
                    Connection(conn, state, peer_uid=peer_uid(conn)).serve()
                except Exception as exc:  # noqa: BLE001 - one bad connection must not cost a serving thread
                    self.log.error(f"connection failed: {type(exc).__name__}: {exc}")
                break


# -- master ---------------------------------------------------------------------------------------
class Master(Supervisor):
    """The pre-fork supervisor plus what is aveserver's own: the database its workers inherit and
    the SIGHUP reload into a new generation of workers."""

    def __init__(self, config_path: str, settings: ServerSettings, log: EventLog) -> None:
        super().__init__("aveserver", log, self.serve, settings.workers, on_hup=self.reload,
                         owned=(settings.socket_path, settings.pid_path),
                         run_as=resolve_user(settings.user, "[aveserver.options]"),
                         scoreboard=scoreboard_path(settings.pid_path))
        self.config_path = config_path
        self.settings = settings
        self.engine: Engine | None = None
        self.db_date = ""
        self.socks: list[socket.socket] = []

    # database ------------------------------------------------------------------------------
    def load_engine(self, settings: ServerSettings) -> Engine:
        t0 = time.monotonic()
        try:
            key = key_from_config(settings.config)
        except (OSError, ValueError) as exc:
            raise DatabaseError(f"BasesPublicKey: {exc}") from None
        engine = Engine.load(settings.bases, settings.limits, trusted_cache(settings.cache, self.log), key)
        for err in engine.sigs.errors[:50]:
            self.log.error(f"database: {err} (line skipped)")
        if len(engine.sigs.errors) > 50:
            self.log.error(f"database: {len(engine.sigs.errors) - 50} more bad lines skipped")
        for box in engine.sigs.containers:
            self.log.info(f"database container {box}")
        self.log.info(
            f"anti-virus database loaded from {settings.bases}: {engine.sigs.summary()}; "
            f"{len(engine.sigs.files)} files, {time.monotonic() - t0:.2f} s"
            + (" (compiled matcher from cache)" if engine.matcher.from_cache else "")
            + f"; prefilter {prefilter_name()}"
        )
        hint = prefilter_hint()
        if hint:
            self.log.warning(hint)
        if engine.record_count == 0:
            self.log.warning(f"the anti-virus database in {settings.bases} is empty: nothing will be detected "
                             "until it is filled (keepup2date); scanned mail carries no bases date")
        return engine

    # workers -------------------------------------------------------------------------------
    def serve(self) -> int:
        assert self.engine is not None
        return Worker(self.socks, self.engine, self.settings, self.log, self.db_date, self.ask_master,
                      self.master_pid, self.marking).run()

    def spawn_generation(self) -> None:
        gc.collect()
        gc.freeze()  # keep the database's pages shared with the workers (copy-on-write)
        super().spawn_generation()

    # signals -------------------------------------------------------------------------------
    def reload(self) -> None:
        self.log.info(f"SIGHUP: reloading configuration {self.config_path} and the anti-virus database")
        try:
            cfg = load_config(self.config_path)
            new = ServerSettings.from_config(cfg)
        except (ConfigError, KeyError) as exc:
            self.log.error(f"reload refused, configuration unusable, still serving the previous one: {exc}")
            return
        try:
            engine = self.load_engine(new)
        except DatabaseError as exc:
            self.log.error(f"reload refused, new anti-virus database unusable: {exc}; "
                           "still serving the previous database")
            return
        if new.socket_path != self.settings.socket_path or new.tcp_port != self.settings.tcp_port:
            self.log.warning("LocalSocketPath/ClamdTcpPort changes take effect at the next restart")
            new.socket_path, new.tcp_port = self.settings.socket_path, self.settings.tcp_port
        self.log.reopen()
        self.settings, self.engine = new, engine
        self.size = new.workers
        self.db_date = database_date(new.bases, engine.record_count)
        gc.unfreeze()
        self.new_generation(signal.SIGUSR2)
        self.log.info(f"reload complete: {len(self.current)} workers serve {engine.record_count} records")

    def run(self, ready: callable | None = None) -> int:  # type: ignore[valid-type]
        def started() -> None:
            self.log.info(f"aveserver started, pid {os.getpid()}, {self.settings.workers} workers, socket "
                          f"{self.settings.socket_path}" + (f", clamd TCP {self.settings.tcp_addr}:"
                                                            f"{self.settings.tcp_port}" if self.settings.tcp_port
                                                            else ""))
            if ready is not None:
                ready()

        return super().run(ready=started)

    def shutdown(self) -> int:
        self.stopping = True
        self.log.info("SIGTERM: finishing scans in progress and stopping")
        for s in self.socks:
            s.close()
        super().shutdown()
        self.log.info("aveserver stopped")
        return 0


# -- start-up -------------------------------------------------------------------------------------
def _daemonize() -> tuple[int, int]:
    """Fork into the background; return (read end kept by the parent, write end for the daemon)."""
    rfd, wfd = os.pipe()
    if os.fork() > 0:
        os.close(wfd)
        # The original process waits for the daemon's word and exits with it (6.4 StartupMode).
        msg = b""
        while not msg.endswith(b"\n"):  # one line; workers may still hold the pipe open
            chunk = os.read(rfd, 4096)
            if not chunk:
                break
            msg += chunk
        if msg.startswith(b"OK"):
            os._exit(0)
        sys.stderr.write(msg.decode("utf-8", "replace") or "aveserver: failed to start\n")
        os._exit(1)
    os.close(rfd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return rfd, wfd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="aveserver", description="kav4mailservers scanning daemon (guide 6.4)")
    ap.add_argument("-c", "--config", default=CONFIG_FILE, help="configuration file (default %(default)s)")
    ap.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground (DetachFromTerminal=no)")
    ap.add_argument("--list-bases", action="store_true", help="list the databases in BasesPath and what was loaded")
    ap.add_argument("--list-viruses", action="store_true", help="print every detectable name (guide 1.1)")
    args = ap.parse_args(argv)
    survive_early_hup()
    try:
        cfg = load_config(args.config)
        settings = ServerSettings.from_config(cfg)
    except (ConfigError, KeyError) as exc:  # KeyError: a key this aveserver needs is not in the schema
        sys.stderr.write(f"aveserver: {exc}\n")
        readiness.failed(exc)
        return 1
    if args.list_bases or args.list_viruses:
        try:
            lister = list_bases if args.list_bases else list_viruses
            return lister(settings.bases, key_from_config(cfg), sys.stdout)
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"aveserver: {exc}\n")
            return 1
    try:
        log = EventLog.from_config(cfg, "aveserver.report")
    except OSError as exc:
        sys.stderr.write(f"aveserver: cannot open event log: {exc}\n")
        readiness.failed(exc)
        return 1
    detach = settings.detach and not args.foreground
    notify_fd = -1

    def tell(msg: str) -> None:
        nonlocal notify_fd
        if notify_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(notify_fd, msg.encode())
                os.close(notify_fd)
            notify_fd = -1

    try:
        clean_stale(settings, log)
        if detach and settings.startup == "fast":
            _, notify_fd = _daemonize()
            tell("OK\n")
        master = Master(args.config, settings, log)
        log.info(f"aveserver {os.getpid()}: configuration {args.config}")
        if master.run_as is not None:
            log.info(f"workers serve as {master.run_as.pw_name} (uid {master.run_as.pw_uid})")
        elif os.geteuid() == 0:
            log.warning("[aveserver.options] User=root: workers serve clients as root (not recommended)")
        from runtime.license.info import log_key_info  # 5.4.2: key information at start; never raises

        log_key_info(log, cfg)
        master.engine = master.load_engine(settings)
        master.db_date = database_date(settings.bases, master.engine.record_count)
        master.socks = bind_sockets(settings, master.run_as)
        if detach and notify_fd < 0:
            _, notify_fd = _daemonize()
        write_pid(settings.pid_path)
    except (StartupError, DatabaseError, OSError) as exc:
        msg = f"aveserver: cannot start: {exc}"
        log.fatal(msg)
        readiness.failed(exc)
        if notify_fd >= 0:
            tell(msg + "\n")
        else:
            sys.stderr.write(msg + "\n")
        return 1

    def ready() -> None:
        tell("OK\n")
        readiness.ready(f"serving {settings.socket_path}")

    try:
        return master.run(ready=ready)
    finally:
        if not master.stopping:
            master.remove_owned()  # an exception escaped the loop: no socket nobody answers


if __name__ == "__main__":
    sys.exit(main())

