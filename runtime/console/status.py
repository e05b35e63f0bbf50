"""What the Status page and /metrics report about the running product (guide 4.3, 6.4, 5.1).

Everything is read, nothing changed: aveserver is asked for its VERSION over its socket, the
filter's listener is probed with a connect, the MTA's queue is read with the MTA's own read-only
listing command.  Each probe has a short timeout so a hung daemon cannot hang the console.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.config import KavConfig
from runtime.engine.client import AveClient
from runtime.prefork import read_scoreboard, scoreboard_path

STALE_AFTER = 86400  # the guide's daily updates: a database older than a day is worth a warning


@dataclass
class Status:
    aveserver_up: bool = False
    aveserver_error: str = ""
    product: str = ""
    database: str = ""
    records: int = 0
    db_date: str = ""
    db_age: float | None = None
    workers: int | None = None  # aveserver's worker processes (children of the pid in AVSpidPATH)
    busy: int | None = None  # aveserver workers scanning now / idle, from its scoreboard (None: no board)
    idle: int | None = None
    scans: int | None = None  # scans in progress over all aveserver workers
    sessions: int | None = None  # SMTP/LMTP connections open to smtpscanner's listener (None: not readable)
    filter_busy: int | None = None  # smtpscanner workers holding a session / none (None: not visible)
    filter_idle: int | None = None
    smtpscanner_pid: int | None = None  # its master, when it runs as the console's account
    smtpscanner_started: str = ""
    smtpscanner_outdated: bool = False  # started before the configuration file last changed
    smtpscanner_up: bool = False
    smtpscanner_listen: str = ""
    queue: str = ""
    last_update: str = ""
    licences: list[str] = field(default_factory=list)  # the guide's key lines (5.4.2 -s)
    days_left: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, serial) of active keys
    warnings: list[str] = field(default_factory=list)

    @property
    def db_stale(self) -> bool:
        return self.db_age is not None and self.db_age > STALE_AFTER


def _listening(listen: str, timeout: float = 1.0) -> bool:
    kind, _, where = listen.partition(":")
    try:
        if kind == "unix":
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(timeout)
                s.connect(where)
        else:
            host, _, port = where.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                pass
    except (OSError, ValueError):
        return False
    return True


def worker_count(pidfile: str) -> int | None:
    """aveserver's worker processes: the children of its master, read from /proc (any user may)."""
    try:
        master = int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    n = 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    n += 1
            except (OSError, IndexError, ValueError):
                continue
    return n


def aveserver_board(cfg: KavConfig, st: Status) -> None:
    """Busy and idle aveserver workers from the scoreboard its master keeps beside the pid file
    (runtime.prefork.Scoreboard): a worker is busy while it holds a scan slot."""
    owners = [os.getuid()]
    try:
        owners.append(pwd.getpwnam(str(cfg.get("aveserver.options", "User"))).pw_uid)
    except KeyError:
        pass
    board = read_scoreboard(scoreboard_path(Path(str(cfg.get("path", "AVSpidPATH")))), tuple(owners))
    if board is None:
        return
    st.workers = len(board)
    st.busy = sum(1 for _, n in board if n > 0)
    st.idle = st.workers - st.busy
    st.scans = sum(n for _, n in board)


TCP_LISTEN, TCP_ESTABLISHED = "0A", "01"
UNIX_LISTENING, UNIX_CONNECTED = "01", "03"


def listener_sockets(listen: str) -> tuple[set[str], set[str]] | None:
    """Socket inodes of smtpscanner's listener and of the sessions accepted on it, from the
    kernel's tables (/proc/net/tcp, tcp6, unix): no help from smtpscanner, whatever mode it runs
    in.  Only the accepted (server) side of a connection carries the listener's port or path."""
    kind, _, where = listen.partition(":")
    listening: set[str] = set()
    sessions: set[str] = set()
    try:
        if kind == "unix":
            with open("/proc/net/unix", encoding="ascii", errors="replace") as fh:
                next(fh, None)
                for f in map(str.split, fh):
                    if len(f) >= 8 and f[7] == where:
                        {UNIX_LISTENING: listening, UNIX_CONNECTED: sessions}.get(f[5], set()).add(f[6])
        elif kind == "inet":
            port = int(where.rpartition(":")[2])
            for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                with contextlib.suppress(FileNotFoundError), open(table, encoding="ascii", errors="replace") as fh:
                    next(fh, None)
                    for f in map(str.split, fh):
                        if len(f) > 9 and int(f[1].rpartition(":")[2], 16) == port:
                            {TCP_LISTEN: listening, TCP_ESTABLISHED: sessions}.get(f[3], set()).add(f[9])
        else:
            return None
    except (OSError, ValueError):
        return None
    return listening - {"0"}, sessions - {"0"}


def open_sessions(listen: str) -> int | None:
    """SMTP/LMTP connections open to smtpscanner's listener."""
    socks = listener_sockets(listen)
    return None if socks is None else len(socks[1])


def smtpscanner_processes(listen: str) -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, sessions it holds) of every smtpscanner process holding the listener.

    Only processes of the console's own account can be looked into (/proc/PID/fd), which is the
    account smtpscanner runs as in the packages; a process of another account is never counted,
    nor one whose command line is not smtpscanner's."""
    socks = listener_sockets(listen)
    if socks is None or not socks[0]:
        return {}
    listening = {f"socket:[{i}]" for i in socks[0]}
    accepted = {f"socket:[{i}]" for i in socks[1]}
    found: dict[int, tuple[int, int]] = {}
    uid = os.getuid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if d.stat().st_uid != uid:
                continue
            links = [os.readlink(fd) for fd in (d / "fd").iterdir()]
            if listening.isdisjoint(links):
                continue
            if b"smtpscanner" not in (cmd := (d / "cmdline").read_bytes()) and b"runtime.filter" not in cmd:
                continue
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            found[int(d.name)] = (ppid, sum(1 for link in links if link in accepted))
        except (OSError, ValueError, IndexError):
            continue
    return found


def smtpscanner_load(listen: str, st: Status) -> None:
    """Busy and idle smtpscanner workers: a worker is busy while it holds at least one session.
    Pre-forked, the workers are the master's children (the master only supervises); a single
    process is its own one worker."""
    procs = smtpscanner_processes(listen)
    if not procs:
        return
    children = [n for pid, (ppid, n) in procs.items() if ppid in procs]
    workers = children or [n for _, n in procs.values()]
    st.filter_busy = sum(1 for n in workers if n > 0)
    st.filter_idle = len(workers) - st.filter_busy


def smtpscanner_process(listen: str) -> tuple[int, float] | None:
    """(pid, start time) of the smtpscanner master: the holder whose parent does not hold the
    listener too."""
    procs = smtpscanner_processes(listen)
    masters = [pid for pid, (ppid, _) in procs.items() if ppid not in procs]
    if len(masters) != 1:
        return None
    pid = masters[0]
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return pid, boot + ticks / os.sysconf("SC_CLK_TCK")


def smtpscanner_outdated(cfg: KavConfig, config_path: str, st: Status) -> None:
    """Say when the standing smtpscanner serves the configuration as it was before the file last
    changed: judged by when it last read the file (its reload state, :mod:`runtime.console.reload`),
    else by its start time (without a pid file it is known to read the file at start only)."""
    from runtime.console.reload import daemon_state

    proc = smtpscanner_process(st.smtpscanner_listen)
    if proc is None:
        return
    st.smtpscanner_pid, started = proc
    st.smtpscanner_started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    try:
        changed = os.stat(config_path).st_mtime
    except OSError:
        return
    state = daemon_state(cfg)
    if state is not None and state.pid == st.smtpscanner_pid:
        st.smtpscanner_outdated = changed > state.loaded_at
        if st.smtpscanner_outdated:
            read = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.loaded_at))
            st.warnings.append(f"smtpscanner (pid {st.smtpscanner_pid}) serves the configuration it read at {read}, "
                               f"before {config_path} last changed: reload it (Reload, or systemctl reload "
                               "kav4mailservers-smtpscanner)")
        return
    # start times have the clock tick's resolution: a second's margin
    st.smtpscanner_outdated = changed > started + 1
    if st.smtpscanner_outdated:
        st.warnings.append(f"smtpscanner (pid {st.smtpscanner_pid}, started {st.smtpscanner_started}) runs with "
                           f"the configuration as it was before {config_path} last changed: reload or restart it "
                           "(systemctl reload kav4mailservers-smtpscanner)")


def last_update(cfg: KavConfig) -> str:
    """The last line keepup2date wrote to its event log (guide 5.1.2), or why there is none."""
    path = cfg.get("updater.report", "ReportFileName")
    if not path:
        return "keepup2date logs to standard error ([updater.report] ReportFileName is empty)"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError as exc:
        return f"no update log ({path}: {exc.strerror})"
    return lines[-1][:300] if lines else f"{path} is empty"


def licences(cfg: KavConfig, st: Status) -> None:
    """Installed product keys (5.4) as licensemanager -s prints them, and days left of the active ones."""
    from runtime.license.info import installed_line
    from runtime.license.keystore import KeyStore

    today = dt.date.today()
    try:
        store = KeyStore.for_config(cfg)
        items = store.installed()
        active = store.active(today)
    except Exception as exc:  # noqa: BLE001 - shown, never a failed page
        st.licences = [f"product keys unreadable: {exc}"]
        return
    st.licences = [installed_line(i, today) for i in items] or [f"no product key installed in {store.directory}"]
    st.days_left = {(k.type, k.serial): k.days_left(today) for k in active.values()}
    for (ktype, serial), days in sorted(st.days_left.items()):
        if days <= 14:
            st.warnings.append(f"product key {serial} ({ktype}) " +
                               (f"expired {-days} days ago" if days < 0 else f"expires in {days} days"))


def mail_queue() -> str:
    """A one-line summary of the MTA's queue (read-only: postqueue -p / exim -bpc / mailq)."""
    for argv in (["postqueue", "-p"], ["exim", "-bpc"], ["mailq"]):
        if shutil.which(argv[0]) is None:
            continue
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = (out.stdout or out.stderr).strip().splitlines()
        return f"{' '.join(argv)}: {text[-1][:200] if text else 'no output'}"
    return "no MTA queue command found"


def collect(cfg: KavConfig, queue: bool = True, config_path: str = "") -> Status:
    st = Status()
    try:
        with AveClient(cfg.get("path", "LocalSocketPath"), timeout=3.0) as c:
            v = c.version()
        st.aveserver_up = True
        st.product = str(v.get("product", ""))
        st.database = str(v.get("database", ""))
        st.records = int(v.get("records", 0) or 0)
        st.db_date = str(v.get("date", ""))
        try:
            st.db_age = max(0.0, time.time() - time.mktime(time.strptime(st.db_date, "%a %b %d %H:%M:%S %Y")))
        except ValueError:
            st.db_age = None
    except Exception as exc:  # noqa: BLE001 - any failure means "down", shown with its reason
        st.aveserver_error = f"{exc.__class__.__name__}: {exc}"
        st.warnings.append(f"aveserver is not answering on {cfg.get('path', 'LocalSocketPath')}")
    if st.aveserver_up:
        aveserver_board(cfg, st)
        if st.workers is None:
            st.workers = worker_count(str(cfg.get("path", "AVSpidPATH")))
    if st.db_stale:
        st.warnings.append(f"the anti-virus database is {st.db_age / 86400:.1f} days old (run keepup2date)")
    st.smtpscanner_listen = str(cfg.get("smtpscan.general", "ListenAddress"))
    sessions = open_sessions(st.smtpscanner_listen)  # before the probe, which is a connection itself
    st.smtpscanner_up = _listening(st.smtpscanner_listen)
    if st.smtpscanner_up:
        st.sessions = sessions
        smtpscanner_load(st.smtpscanner_listen, st)
        if config_path:
            smtpscanner_outdated(cfg, config_path, st)
    if not st.smtpscanner_up:
        st.warnings.append(f"smtpscanner is not listening on {st.smtpscanner_listen}")
    licences(cfg, st)
    if not cfg.get("console", "StatisticsStore"):
        st.warnings.append("[console] StatisticsStore is not set: no statistics are recorded")
    if queue:
        st.queue = mail_queue()
        st.last_update = last_update(cfg)
    return st
