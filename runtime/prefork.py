"""The one pre-fork skeleton shared by aveserver (guide 6.4) and smtpscanner (guide 2.1).

Both daemons are a master that binds the listening sockets, then forks workers that inherit them:
scanning and mail parsing are CPU bound and a Python process uses one core.  What is common lives
here, once:

* the pid file and the stale files a ``kill -9`` leaves behind (6.4.2): a live instance is
  refused, a dead one's pid file and socket are removed;
* the master's signal loop: SIGCHLD reaps and respawns (with a back-off, so a worker that dies at
  once does not turn into a fork loop), SIGHUP calls the daemon's own reload, SIGTERM/SIGINT stop
  the workers (a grace period, then SIGKILL) and remove the socket and pid file;
* generations: a reload may start a new set of workers and retire the old one (aveserver keeps
  serving the open connections of the retired workers until they close);
* :meth:`Supervisor.enter_worker`: what every worker does right after the fork, before it
  serves.  It is the single place for per-worker hardening: a master started by root keeps root
  only to bind, write the pid file and remove both at the end; every worker drops to the daemon's
  account (``run_as``) before it reads a byte from a client (the privilege model, design.md "Who
  runs as whom").
* the control pipe: a worker that no longer runs as root cannot signal its root master, so the
  requests a client may make of the master (reload, stop; already checked by the worker against
  the client's credentials) travel over a pipe the master reads in its loop;
* the scoreboard (optional): one shared page per daemon in its run directory where each worker
  counts the requests it is serving, so kavconsole can show busy and idle workers (issue 18)
  without asking the daemon anything.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import mmap
import os
import pwd
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runtime.fsutil import atomic_write, read_trusted
from runtime.report import EventLog

T = TypeVar("T")


class StartupError(Exception):
    """The daemon cannot start; the message is what the administrator needs to read."""


class AddressInUse(StartupError):
    """Someone answers on the address this daemon is to listen on.  ``errno`` is what the
    readiness protocol reports (``start-stop-daemon``: "Address already in use")."""

    errno = errno.EADDRINUSE


#: How often and how far apart a daemon tries an address in use before it gives up: the last
#: workers of a killed master close their copy of the listening socket as soon as their SIGTERM
#: (PR_SET_PDEATHSIG) is handled, so an address held by them frees within moments, while one
#: held by another service never does.  nginx tries its listening addresses the same way.
IN_USE_TRIES, IN_USE_PAUSE = 5, 0.5


def while_in_use(claim: Callable[[], T], what: str, log: EventLog | None) -> T:
    """``claim()``, again while it raises :class:`AddressInUse`, ``IN_USE_TRIES`` times in all."""
    for attempt in range(1, IN_USE_TRIES):
        try:
            return claim()
        except AddressInUse as exc:
            if log is not None:
                log.warning(f"{what}: {exc}; trying again in {IN_USE_PAUSE:g} s ({attempt} of {IN_USE_TRIES})")
            time.sleep(IN_USE_PAUSE)
    return claim()  # the last try: its AddressInUse is the answer


# -- pid file and stale files ---------------------------------------------------------------------
def pid_alive(pid: int, names: tuple[bytes, ...] = ()) -> bool:
    """Whether ``pid`` runs and looks like one of ``names`` (a recycled pid of another program
    does not count; without /proc or without ``names``, any live process does)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not names:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return any(name in cmdline for name in names)


def clean_stale_pid(pid_path: Path, what: str, names: tuple[bytes, ...], log: EventLog) -> None:
    """Refuse to start next to a live instance; remove the pid file of a dead one."""
    if not pid_path.exists():
        return
    try:
        pid = int(pid_path.read_text().strip() or "0")
    except (OSError, ValueError):
        pid = 0
    if pid > 0 and pid != os.getpid() and pid_alive(pid, names):
        raise StartupError(f"{what} is already running (pid {pid}, pid file {pid_path})")
    log.warning(f"removing stale pid file {pid_path} (pid {pid} is not running)")
    pid_path.unlink(missing_ok=True)


def clean_stale_socket(sock_path: Path, log: EventLog | None = None) -> None:
    """Remove a UNIX socket nobody answers on; refuse a live one or anything that is not a socket."""
    if not (sock_path.exists() or sock_path.is_symlink()):
        return
    if not sock_path.is_socket():
        raise StartupError(f"{sock_path} exists and is not a socket; refusing to remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(str(sock_path))
    except OSError:
        if log is not None:
            log.warning(f"removing stale socket {sock_path}")
        sock_path.unlink(missing_ok=True)
    else:
        raise AddressInUse(f"another server is listening on {sock_path}")
    finally:
        probe.close()


def listen_unix(path: Path, mode: int, owner: tuple[int, int] | None = None, backlog: int = 128) -> socket.socket:
    """A listening UNIX socket that appears at ``path`` only once it accepts, already with its
    owner and ``mode``: bound under a private temporary name (umask 0177, so never more open than
    its owner meanwhile), listening, chowned and chmodded, then renamed into place.  A client that
    sees the path (an MTA, a test polling for it) is never refused for being too early."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    tmp.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(str(tmp))
        finally:
            os.umask(old)
        sock.listen(backlog)
        if owner is not None:
            os.chown(tmp, *owner)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        sock.close()
        tmp.unlink(missing_ok=True)
        raise
    return sock


def survive_early_hup() -> None:
    """Called first thing by a daemon that reloads on SIGHUP: until its loop installs the real
    handler (after it read the configuration and bound its socket), a SIGHUP is ignored rather
    than fatal (the default action).  A unit's ExecReload or logrotate may send one as soon as the
    socket answers, and the daemon has only just read the file then."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, f"{os.getpid()}\n".encode(), mode=0o644)


def resolve_user(user: str, what: str) -> pwd.struct_passwd | None:
    """The account a daemon started by root serves as; None when it keeps the current uid.

    Not root: nothing to drop (the administrator already runs it as the account of their choice).
    ``root`` is accepted only as an explicit opt-out; an account that does not exist is a start-up
    error, never a silent fall-back to root."""
    if os.geteuid() != 0 or user == "root":
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise StartupError(f"{what} User {user!r} does not exist; refusing to serve as root "
                           "(create the account or set User=root explicitly)") from None
    return None if pw.pw_uid == 0 else pw


def drop_privileges(pw: pwd.struct_passwd) -> None:
    """Become ``pw`` for good: supplementary groups, gid, then uid (the order that leaves no way
    back); verified, because a process that still has root after this must not serve."""
    groups = sorted({pw.pw_gid, *(g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem)})
    os.setgroups(groups)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("could not drop root privileges")


def die_with_parent(master: int) -> None:
    """Linux: have the kernel send SIGTERM to this worker when the master dies (kill -9).

    The request only covers a death after it is made: a master killed between the fork (or the
    setuid, which clears it) and here has already left the worker reparented, so the parent is
    checked once more and such an orphan exits at once instead of holding the socket and the
    log pipes of a daemon that no longer exists.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere a worker notices the new parent (os.getppid) within half a second
    if os.getppid() != master:
        os._exit(0)


# -- scoreboard -----------------------------------------------------------------------------------
SCOREBOARD_MAGIC = b"KAVSB001"
SCOREBOARD_SLOTS = 500  # header + slots of 8 bytes: one 4 KiB page, far more workers than any host runs
_HEAD = struct.Struct("<8sii")  # magic, slots, master pid
_SLOT = struct.Struct("<iI")  # worker pid (0: free slot), requests in progress


def scoreboard_path(pid_path: Path) -> Path:
    """Where a daemon whose pid file is ``pid_path`` keeps its scoreboard: beside it, so the
    console finds it from the configuration alone."""
    return pid_path.with_name(pid_path.stem + ".scoreboard")


class Scoreboard:
    """One page shared by the master and its workers (a file the master maps before it forks).

    Each worker owns a slot: its pid and how many requests it is serving.  Marking a request is a
    thread lock and two writes to shared memory, no system call, so it adds nothing measurable per
    scan; the file exists only so another process (kavconsole) can map the page read-only.
    """

    SIZE = _HEAD.size + SCOREBOARD_SLOTS * _SLOT.size

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, bytes(self.SIZE), mode=0o644)
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self.map = mmap.mmap(fd, self.SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        _HEAD.pack_into(self.map, 0, SCOREBOARD_MAGIC, SCOREBOARD_SLOTS, os.getpid())
        self.owner: dict[int, int] = {}  # in the master: worker pid -> slot
        self.slot = -1  # in a worker: its own slot
        self.lock = threading.Lock()

    @staticmethod
    def _offset(slot: int) -> int:
        return _HEAD.size + slot * _SLOT.size

    # master ----------------------------------------------------------------------------------
    def claim(self) -> int:
        """A free slot for the worker about to be forked (-1 when all are taken: it runs unmarked)."""
        taken = set(self.owner.values())
        for slot in range(SCOREBOARD_SLOTS):
            if slot not in taken:
                _SLOT.pack_into(self.map, self._offset(slot), 0, 0)
                return slot
        return -1

    def assign(self, slot: int, pid: int) -> None:
        if slot >= 0:
            self.owner[pid] = slot
            struct.pack_into("<i", self.map, self._offset(slot), pid)  # the pid only: the worker may be counting

    def release(self, pid: int) -> None:
        slot = self.owner.pop(pid, -1)
        if slot >= 0:
            _SLOT.pack_into(self.map, self._offset(slot), 0, 0)

    # worker ----------------------------------------------------------------------------------
    def enter(self, slot: int) -> None:
        self.slot = slot
        if slot >= 0:
            _SLOT.pack_into(self.map, self._offset(slot), os.getpid(), 0)

    def _add(self, n: int) -> None:
        if self.slot < 0:
            return
        off = self._offset(self.slot)
        with self.lock:
            pid, busy = _SLOT.unpack_from(self.map, off)
            _SLOT.pack_into(self.map, off, pid, max(0, busy + n))

    def marking(self, inner: contextlib.AbstractContextManager) -> contextlib.AbstractContextManager:
        """``inner`` (e.g. a worker's scan semaphore) whose holders count as busy requests."""
        return _Marked(self, inner)


class _Marked:
    def __init__(self, board: Scoreboard, inner: contextlib.AbstractContextManager) -> None:
        self.board, self.inner = board, inner

    def __enter__(self) -> object:
        got = self.inner.__enter__()
        self.board._add(1)
        return got

    def __exit__(self, *exc: object) -> bool | None:
        self.board._add(-1)
        return self.inner.__exit__(*exc)


def read_scoreboard(path: Path, owners: tuple[int, ...] = ()) -> list[tuple[int, int]] | None:
    """(pid, requests in progress) of each live worker on a daemon's scoreboard; None when there is
    no usable board (daemon not running, stopped by kill -9, or started without one).

    Read by another program, so trusted only when it is a regular file (never followed through a
    link) owned by root or one of ``owners`` and writable by its owner alone: a board somebody
    else could write would be a number anybody could fake."""
    data = read_trusted(path, owners, Scoreboard.SIZE)
    if data is None or len(data) < Scoreboard.SIZE:
        return None
    magic, slots, master = _HEAD.unpack_from(data, 0)
    if magic != SCOREBOARD_MAGIC or slots != SCOREBOARD_SLOTS or not pid_alive(master):
        return None
    out = []
    for slot in range(slots):
        pid, busy = _SLOT.unpack_from(data, _HEAD.size + slot * _SLOT.size)
        if pid_alive(pid):
            out.append((pid, busy))
    return out


# -- the master -----------------------------------------------------------------------------------
class Supervisor:
    """A master process keeping ``size`` forked workers running ``work``.

    ``work`` runs in the child and returns its exit code; the child never returns into the
    master's code.  ``on_hup`` is the daemon's reload (called in the master, outside the signal
    handler).  ``owned`` are the paths (socket, pid file) removed when the master stops.
    ``scoreboard``: where to keep the busy/idle page (:class:`Scoreboard`); workers mark what
    they serve through :meth:`marking`.
    """

    RESPAWN_FIRST = 0.2  # seconds before replacing a dead worker ...
    RESPAWN_MAX = 10.0  # ... doubling while workers keep dying young, up to this
    YOUNG = 5.0  # a worker that lived less than this counts as dying young
    GRACE = 30.0  # SIGTERM: seconds the workers get to finish what they are doing

    CONTROL = {b"H": signal.SIGHUP, b"T": signal.SIGTERM}  # control pipe byte -> the signal it stands for

    def __init__(self, name: str, log: EventLog, work: Callable[[], int], size: int,
                 on_hup: Callable[[], None] | None = None, owned: tuple[Path, ...] = (),
                 run_as: pwd.struct_passwd | None = None, scoreboard: Path | None = None) -> None:
        self.name = name
        self.scoreboard_at = scoreboard
        self.board: Scoreboard | None = None  # mapped in run(), by the master that forks
        self.run_as = run_as
        self.log = log
        self.work = work
        self.size = size
        self.on_hup = on_hup
        self.owned = owned
        self.current: dict[int, float] = {}  # pid -> start time, workers of the current generation
        self.retired: set[int] = set()  # an older generation, finishing its open connections
        self.flags: set[int] = set()
        self.stopping = False
        self.backoff = self.RESPAWN_FIRST
        self.respawn_at: list[float] = []  # monotonic times at which a replacement is due
        self.master_pid = os.getpid()  # a worker compares its parent with this to notice an orphaning
        self.control_r, self.control_w = os.pipe()  # workers -> master: reload / stop requests
        os.set_blocking(self.control_r, False)
        os.set_blocking(self.control_w, False)

    # workers ---------------------------------------------------------------------------------
    def enter_worker(self) -> None:
        """Run in every worker right after the fork: default signal dispositions, die with the
        master, drop to ``run_as`` (one place for both daemons).  Nothing a client sends is read
        before this returns."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        # The master passes SIGHUP on (logrotate, a refused reload) at any moment, also to a worker
        # still starting: ignored until the worker installs its own handler, never fatal.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        os.close(self.control_r)
        die_with_parent(self.master_pid)
        if self.run_as is not None:
            drop_privileges(self.run_as)
            die_with_parent(self.master_pid)  # setuid clears PR_SET_PDEATHSIG

    def marking(self, inner: contextlib.AbstractContextManager) -> contextlib.AbstractContextManager:
        """In a worker: ``inner`` with its holders counted busy on the scoreboard (``inner`` as it is
        when the daemon keeps no scoreboard)."""
        return inner if self.board is None else self.board.marking(inner)

    def ask_master(self, request: str) -> None:
        """From a worker: ``reload`` or ``stop`` (the caller has checked the client may ask)."""
        byte = {"reload": b"H", "stop": b"T"}[request]
        with contextlib.suppress(BlockingIOError):
            os.write(self.control_w, byte)

    #: Blocked across the fork: one arriving between ``fork`` and ``enter_worker`` would otherwise
    #: run the master's inherited handler in the child (a flag in the child's copy of the master),
    #: so a SIGTERM sent to a new worker was lost and the master's shutdown waited on it forever.
    FORK_BLOCKED = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR2})

    def spawn(self) -> int:
        self.master_pid = os.getpid()
        slot = self.board.claim() if self.board is not None else -1
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.FORK_BLOCKED)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if self.board is not None:
                    self.board.enter(slot)
                self.enter_worker()
                # a signal sent meanwhile is delivered now, to the worker's own dispositions
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                code = self.work()
            except BaseException as exc:  # noqa: BLE001 - a worker must never return into the master's code
                with contextlib.suppress(Exception):
                    self.log.error(f"{self.name} worker {os.getpid()} failed: {exc}")
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.current[pid] = time.monotonic()
        if self.board is not None:
            self.board.assign(slot, pid)
        return pid

    def spawn_generation(self) -> None:
        for _ in range(self.size):
            self.spawn()

    def new_generation(self, retire_signal: int) -> None:
        """Start a fresh set of workers, then tell the old ones to stop accepting
        (``retire_signal``); they exit on their own once their connections are done.  New
        before old: the listening socket never goes unserved.

        At most one retired generation keeps serving: workers retired by an earlier reload and
        still holding a connection are told to stop (SIGTERM: finish the request in flight, then
        exit), so reloads cannot pile up workers (20 sessions each asking for a RELOAD used to
        leave 21 generations running)."""
        for pid in self.retired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        old, self.current = set(self.current), {}
        self.spawn_generation()
        for pid in old:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, retire_signal)
        self.retired |= old

    def signal_workers(self, sig: int) -> None:
        for pid in set(self.current) | self.retired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.board is not None:
                self.board.release(pid)
            if pid in self.retired:
                self.retired.discard(pid)
                continue
            started = self.current.pop(pid, None)
            if started is None or self.stopping:
                continue
            now = time.monotonic()
            if now - started < self.YOUNG:  # dying young again and again: wait longer each time
                self.backoff = min(self.backoff * 2, self.RESPAWN_MAX)
                delay = self.backoff
            else:
                self.backoff = delay = self.RESPAWN_FIRST
            self.log.error(f"{self.name} worker {pid} exited unexpectedly (status {status}); starting a new one")
            self.respawn_at.append(now + delay)

    def respawn_due(self) -> None:
        """Replace dead workers whose back-off has passed (the loop never sleeps on it, so a
        SIGTERM during a back-off is still served at once)."""
        now = time.monotonic()
        due = [t for t in self.respawn_at if t <= now]
        self.respawn_at = [t for t in self.respawn_at if t > now]
        for _ in due:
            self.spawn()

    # the loop --------------------------------------------------------------------------------
    def run(self, ready: Callable[[], None] | None = None) -> int:
        """Start the workers and supervise them until SIGTERM/SIGINT."""
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        os.set_blocking(rfd, False)
        signal.set_wakeup_fd(wfd)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, lambda s, _f: self.flags.add(s))
        if self.scoreboard_at is not None:
            self.board = Scoreboard(self.scoreboard_at)
            self.owned = (*self.owned, self.scoreboard_at)
        self.spawn_generation()
        if ready is not None:
            ready()
        try:
            while True:
                wait = min([1.0, *(t - time.monotonic() for t in self.respawn_at)])
                with contextlib.suppress(InterruptedError):
                    select.select([rfd, self.control_r], [], [], max(0.0, wait))
                with contextlib.suppress(BlockingIOError):
                    os.read(rfd, 512)
                with contextlib.suppress(BlockingIOError):
                    # many requests queued meanwhile are one reload: the pipe's bytes are a set
                    self.flags |= {self.CONTROL[bytes([b])] for b in os.read(self.control_r, 4096)
                                   if bytes([b]) in self.CONTROL}
                flags, self.flags = self.flags, set()
                if signal.SIGCHLD in flags:
                    self.reap()
                if signal.SIGTERM in flags or signal.SIGINT in flags:
                    return self.shutdown()
                if signal.SIGHUP in flags and self.on_hup is not None:
                    self.on_hup()
                self.respawn_due()
        finally:
            signal.set_wakeup_fd(-1)
            os.close(rfd)
            os.close(wfd)

    def shutdown(self) -> int:
        self.stopping = True
        self.signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + self.GRACE
        while (self.current or self.retired) and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)  # never a blocking wait: the deadline must hold
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            self.current.pop(pid, None)
            self.retired.discard(pid)
        self.signal_workers(signal.SIGKILL)
        self.remove_owned()
        return 0

    def remove_owned(self) -> None:
        for path in self.owned:
            with contextlib.suppress(OSError):
                path.unlink()
