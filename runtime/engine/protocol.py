"""aveserver's two protocols on one socket: our own ``AVE/1`` and the clamd protocol.

The first bytes of a connection decide: ``AVE/1 `` starts our protocol (docs/aveserver-protocol.md);
anything else is read as clamd commands (``zCMD\\0``, ``nCMD\\n`` or a bare ``CMD\\n``), so Exim's
``malware`` ACL, rspamd, amavis and Debian's ``clamdscan`` can talk to aveserver unchanged.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime.config.schema import PRODUCT_NAME
from runtime.report import EventLog

from . import ave1
from .engine import Engine
from .verdict import Status, Verdict
from .wire import ConnectionClosed, LineTooLong, Reader

VERSION = "5.5.0"
PRODUCT = f"{PRODUCT_NAME} aveserver"  # this project's name, never the product it re-creates
MAX_LINE = 65536  # a clamd command line
CLAMD_COMMANDS = (
    "SCAN QUIT RELOAD PING CONTSCAN VERSIONCOMMANDS VERSION END SHUTDOWN MULTISCAN FILDES STATS "
    "IDSESSION INSTREAM ALLMATCHSCAN"
)


@dataclass
class ServerState:
    """What a connection handler needs from its worker."""

    engine: Callable[[], Engine]
    log: EventLog
    stream_max: int
    terminating: Callable[[], bool]  # SIGTERM: finish the request in flight, then close
    idle_timeout: float = 60.0
    reload: Callable[[], None] = lambda: None
    shutdown: Callable[[], None] = lambda: None
    db_date: str = ""
    scan_slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(2))

    def scan(self, data: bytes, name: str, cure: bool = False, all_objects: bool = False) -> Verdict:
        """Scan with at most ``scan_slots`` objects in memory per worker, however many connections."""
        with self.scan_slots:
            return self.engine().scan(data, name, cure=cure, all_objects=all_objects)


def log_verdict(log: EventLog, v: Verdict) -> None:
    """Messages about scanning, guide 6.8.1 extended format."""
    if not v.objects:
        log.activity(f'"{v.path}" OK')
        return
    if any(o.path != v.path for o in v.objects):
        log.activity(f'"{v.path}"')
    for o in v.objects:
        log.activity(o.report_line())


def read_regular(fd: int, limit: int, start: int | None = None) -> bytes:
    """All of a regular file's bytes, at most ``limit``; anything else is an OSError.

    A client names the file (or passes the descriptor), so it may be a FIFO that never ends, a
    device like /dev/zero that never stops, or a file that grows while we read: only a regular
    file is read, and never more than StreamMaxLength bytes.  ``start``: read from that offset
    (SCANFD: the filter's spool descriptor is positioned at its end), else from the current one.

    The first read asks for the whole announced size (plus one byte, to notice growth), so the
    object arrives in one ``bytes`` and is held once, never as chunks and then their join (for a
    50 MB mail that was 100 MB for a moment)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "Not a regular file")
    if st.st_size > limit:
        raise OSError(errno.EFBIG, f"File larger than StreamMaxLength ({limit})")
    chunks, total = [], 0
    while True:
        want = min(max(st.st_size + 1 - total, 1 << 20), limit + 1 - total)
        chunk = os.read(fd, want) if start is None else os.pread(fd, want, start + total)
        if not chunk:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise OSError(errno.EFBIG, f"File larger than StreamMaxLength ({limit})")


def open_regular(path: str) -> int:
    """Open a client-named path without following a final symlink and without blocking on a FIFO
    (O_NONBLOCK), as the worker's unprivileged account; read_regular then refuses non-files."""
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)


def scan_path(state: ServerState, path: str, cure: bool = False, all_objects: bool = False) -> Verdict:
    """Read a file named by a client and scan it (the smtpscanner -> aveserver path of guide 2.1)."""
    with state.scan_slots:
        fd = open_regular(path)
        try:
            data = read_regular(fd, state.stream_max)
        finally:
            os.close(fd)
        v = state.engine().scan(data, path, cure=cure, all_objects=all_objects)
    log_verdict(state.log, v)
    return v


class Connection:
    """Serves one client connection until it closes, idles out or the worker terminates."""

    def __init__(self, sock: socket.socket, state: ServerState, peer_uid: int | None = None) -> None:
        self.sock = sock
        self.state = state
        self.peer_uid = peer_uid  # SO_PEERCRED of a UNIX socket client; None over TCP
        self.idle_since = time.monotonic()
        self.waiting = True
        sock.settimeout(1.0)
        self.reader = Reader(sock, poll=self._should_abort)

    def _should_abort(self) -> bool:
        if not self.waiting:
            return time.monotonic() - self.idle_since > self.state.idle_timeout
        return self.state.terminating() or time.monotonic() - self.idle_since > self.state.idle_timeout

    def serve(self) -> None:
        try:
            first = self.reader.peek(1)
            if first == b"A" and self.reader.peek(len(ave1.MAGIC)) == ave1.MAGIC:
                self._serve_ave()
            else:
                self._serve_clamd()
        except (ConnectionClosed, TimeoutError, ConnectionError, LineTooLong, BrokenPipeError):
            pass
        finally:
            self.reader.close_fds()
            try:
                self.sock.close()
            except OSError:
                pass

    def _begin(self) -> None:
        self.waiting = False
        self.idle_since = time.monotonic()

    def _end(self) -> None:
        self.waiting = True
        self.idle_since = time.monotonic()

    # -- AVE/1 ----------------------------------------------------------------------------
    def _serve_ave(self) -> None:
        while not self.state.terminating():
            line = self.reader.read_until(b"\n", ave1.MAX_LINE)
            self._begin()
            try:
                self._ave_request(line.decode("utf-8", "replace"))
            finally:
                self._end()

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _ave_request(self, line: str) -> None:
        try:
            req = ave1.parse_request(line)
        except ave1.BadRequest as exc:
            self._send(ave1.error(400, str(exc)))
            if exc.close:
                raise ConnectionClosed() from None
            return
        if req.verb == "PING":
            self._send(ave1.PONG)
        elif req.verb == "VERSION":
            eng = self.state.engine()
            self._send(ave1.version_reply({"product": PRODUCT, "version": VERSION, "records": eng.record_count,
                                           "database": eng.sigs.digest[:16], "date": self.state.db_date}))
        elif req.verb == "SCANFILE":
            try:
                v = scan_path(self.state, req.name, cure=req.cure, all_objects=req.all_objects)
            except OSError as exc:
                self._send(ave1.cannot_read(req.name, str(exc.strerror)))
                return
            self._send(ave1.result(v.dumps(), v.cured))
        elif req.verb == "SCANFD":
            self._ave_scan_fd(req)
        elif req.verb == "SCANDATA":
            if req.size > self.state.stream_max:
                self._send(ave1.error(413, f"object larger than StreamMaxLength ({self.state.stream_max})"))
                raise ConnectionClosed()  # the body that follows is not read: the stream is unusable
            data = self.reader.readexact(req.size)
            v = self.state.scan(data, req.name, cure=req.cure, all_objects=req.all_objects)
            log_verdict(self.state.log, v)
            self._send(ave1.result(v.dumps(), v.cured))
        else:  # QUIT
            raise ConnectionClosed()

    def _ave_scan_fd(self, req: ave1.Request) -> None:
        """SCANFD: the descriptor came with the request line (``SCM_RIGHTS``).  Read as the
        worker's own account, from offset 0, only if it is a regular file no larger than
        StreamMaxLength (the same checks as SCANFILE and clamd's FILDES)."""
        if not self.reader.fds:
            self._send(ave1.error(400, "SCANFD: no file descriptor received"))
            return
        fd = self.reader.fds.pop(0)
        self.reader.close_fds()  # only one is used; never keep what a client pushed on us
        try:
            with self.state.scan_slots:
                try:
                    data = read_regular(fd, self.state.stream_max, start=0)
                finally:
                    os.close(fd)
                v = self.state.engine().scan(data, req.name, cure=req.cure, all_objects=req.all_objects)
                del data
        except OSError as exc:
            self._send(ave1.error(404 if exc.errno != errno.EFBIG else 413, f"SCANFD: {exc.strerror}"))
            return
        log_verdict(self.state.log, v)
        self._send(ave1.result(v.dumps(), v.cured))

    # -- clamd ----------------------------------------------------------------------------
    def _serve_clamd(self) -> None:
        session = False
        seq = 0
        while not self.state.terminating():
            first = self.reader.peek(1)
            if first == b"z":
                self.reader.readexact(1)
                raw, term = self.reader.read_until(b"\0", MAX_LINE), b"\0"
            elif first == b"n":
                self.reader.readexact(1)
                raw, term = self.reader.read_until(b"\n", MAX_LINE), b"\n"
            else:
                raw, term = self.reader.read_until(b"\n", MAX_LINE).rstrip(b"\r"), b"\n"
            cmd, _, arg = raw.decode("utf-8", "surrogateescape").partition(" ")
            cmd = cmd.upper()
            self._begin()
            try:
                if cmd == "IDSESSION":
                    session = True
                    continue
                if cmd == "END" or cmd == "QUIT":
                    return
                seq += 1
                prefix = f"{seq}: " if session else ""
                keep = self._clamd_command(cmd, arg, term, prefix)
            finally:
                self._end()
            if not keep or not session:
                return

    def _clamd_reply(self, text: str, term: bytes, prefix: str = "") -> None:
        self._send((prefix + text).encode("utf-8", "surrogateescape") + term)

    def _clamd_command(self, cmd: str, arg: str, term: bytes, prefix: str) -> bool:
        st = self.state
        if cmd == "PING":
            self._clamd_reply("PONG", term, prefix)
        elif cmd == "VERSION":
            eng = st.engine()
            self._clamd_reply(f"aveserver {VERSION}/{eng.record_count}/{st.db_date}", term, prefix)
        elif cmd == "VERSIONCOMMANDS":
            eng = st.engine()
            self._clamd_reply(f"aveserver {VERSION}/{eng.record_count}/{st.db_date}| COMMANDS: {CLAMD_COMMANDS}",
                              term, prefix)
        elif cmd in ("RELOAD", "SHUTDOWN") and not self._may_control():
            st.log.warning(f"{cmd} refused: client uid {self.peer_uid if self.peer_uid is not None else 'over TCP'} "
                           "is neither root nor aveserver's account")
            self._clamd_reply(f"{cmd}: Permission denied (root or aveserver's account, UNIX socket only). ERROR",
                              term, prefix)
            return False
        elif cmd == "RELOAD":
            st.reload()
            self._clamd_reply("RELOADING", term, prefix)
        elif cmd == "SHUTDOWN":
            st.shutdown()
            return False
        elif cmd == "STATS":
            self._clamd_reply("POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: live 1\nMEMSTATS: n/a\nEND", term, prefix)
        elif cmd in ("SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN"):
            if not arg:
                self._clamd_reply("UNKNOWN COMMAND", term, prefix)
                return False
            self._clamd_scan_tree(arg, stop_first=cmd == "SCAN", term=term, prefix=prefix)
        elif cmd == "INSTREAM":
            return self._clamd_instream(term, prefix)
        elif cmd == "FILDES":
            return self._clamd_fildes(term, prefix)
        else:
            self._clamd_reply("UNKNOWN COMMAND", term, prefix)
            return False
        return True

    def _may_control(self) -> bool:
        """RELOAD and SHUTDOWN stop or load the whole daemon: only root or the account aveserver
        serves as, and only over the UNIX socket where the kernel tells us who is asking."""
        return self.peer_uid is not None and self.peer_uid in (0, os.geteuid())

    @staticmethod
    def _clamd_word(v: Verdict) -> tuple[str, str] | None:
        """(name, FOUND|ERROR) for a verdict clamd clients must act on, None for OK.

        Viral statuses are FOUND with the virus name; ERROR is an ERROR line.  PROTECTED and
        CORRUPTED objects are OK, as clamd reports them with its default settings.
        """
        if v.status in (Status.INFECTED, Status.CUREFAILED, Status.SUSPICIOUS, Status.WARNING):
            return (v.names[0] if v.names else "Unknown", "FOUND")
        if v.status is Status.ERROR:
            reason = next((o.name for o in v.objects if o.status is Status.ERROR), "scan error")
            return (reason, "ERROR")
        return None

    def _clamd_scan_tree(self, path: str, stop_first: bool, term: bytes, prefix: str) -> None:
        files: list[str] = []
        if os.path.isdir(path):
            for root, _dirs, names in os.walk(path):
                files.extend(os.path.join(root, n) for n in sorted(names))
        else:
            files.append(path)
        found = False
        walking = os.path.isdir(path)
        for f in files:
            if walking and (os.path.islink(f) or not os.path.isfile(f)):
                continue  # like clamd: no symlinks followed, no sockets or devices read in a tree
            try:
                v = scan_path(self.state, f)
            except OSError as exc:
                self._clamd_reply(f"{f}: {exc.strerror}. ERROR", term, prefix)
                found = True
                continue
            word = self._clamd_word(v)
            if word is not None:
                self._clamd_reply(f"{f}: {word[0]} {word[1]}", term, prefix)
                found = True
                if stop_first and word[1] == "FOUND":
                    return
        if not found:
            self._clamd_reply(f"{path}: OK", term, prefix)

    def _clamd_instream(self, term: bytes, prefix: str) -> bool:
        chunks = []
        total = 0
        while True:
            (n,) = struct.unpack("!I", self.reader.readexact(4))
            if n == 0:
                break
            total += n
            if total > self.state.stream_max:
                self._clamd_reply("INSTREAM size limit exceeded. ERROR", term, prefix)
                return False
            chunks.append(self.reader.readexact(n))
        v = self.state.scan(b"".join(chunks), "stream")
        log_verdict(self.state.log, v)
        word = self._clamd_word(v)
        self._clamd_reply("stream: OK" if word is None else f"stream: {word[0]} {word[1]}", term, prefix)
        return True

    def _clamd_fildes(self, term: bytes, prefix: str) -> bool:
        if not self.reader.fds:
            self.reader.readexact(1)  # the byte that carries the descriptor
        if not self.reader.fds:
            self._clamd_reply("FILDES: didn't receive file descriptor. ERROR", term, prefix)
            return False
        fd = self.reader.fds.pop(0)
        self.reader.close_fds()
        try:
            try:
                data = read_regular(fd, self.state.stream_max)
            finally:
                os.close(fd)
        except OSError as exc:
            self._clamd_reply(f"FILDES: {exc.strerror}. ERROR", term, prefix)
            return False
        name = f"fd[{fd}]"
        v = self.state.scan(data, name)
        log_verdict(self.state.log, v)
        word = self._clamd_word(v)
        self._clamd_reply(f"{name}: OK" if word is None else f"{name}: {word[0]} {word[1]}", term, prefix)
        return True


def database_date(bases: Path, records: int) -> str:
    """Newest modification time of the database files, clamd-style, for VERSION; empty for an
    empty database, which has no date (a made-up one would say the bases are current)."""
    if records == 0:
        return ""
    try:
        newest = max((p.stat().st_mtime for p in bases.iterdir()), default=0.0)
    except OSError:
        newest = 0.0
    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(newest)) if newest else ""
