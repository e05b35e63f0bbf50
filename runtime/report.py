"""Event logs in the guide's format (6.8): ``[date time L] STRING``.

One module for every component, so administrators can grep all logs alike.  ``L`` is the first
letter of the level's name (F fatal, E errors, W warning, I info, A activity, D debug); date and
time follow ``[locale] DateFormat``/``TimeFormat`` (6.7).  Fatal errors are written whatever the
level (6.8).  Each line goes out in one ``write(2)`` on an ``O_APPEND`` descriptor, so the
worker processes of aveserver can share one log without interleaving lines.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from runtime.config import KavConfig

FATAL, ERROR, WARNING, INFO, ACTIVITY, DEBUG = 0, 1, 2, 3, 4, 10
LEVEL_LETTERS = {FATAL: "F", ERROR: "E", WARNING: "W", INFO: "I", ACTIVITY: "A", DEBUG: "D"}


def _letter(level: int) -> str:
    if level in LEVEL_LETTERS:
        return LEVEL_LETTERS[level]
    # Levels 5-9 are finer activity detail; they share the activity letter.
    return "A" if level < DEBUG else "D"


def _one_line(message: str) -> str:
    """A log record is one line: control characters from mail (CR, LF, NUL) are escaped."""
    return message.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace("\0", "\\0")


class EventLog:
    def __init__(
        self,
        path: str | None,
        level: int = ACTIVITY,
        permission: int = 0o640,
        append: bool = True,
        date_format: str = "%d/%m/%y",
        time_format: str = "%H:%M:%S",
        stream: TextIO | None = None,
    ) -> None:
        self.path = path or None
        self.level = level
        self.permission = permission
        self.append = append
        self.date_format = date_format
        self.time_format = time_format
        self._stream = stream if stream is not None else sys.stderr
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._truncate_pending = not append
        if self.path:
            self._open()

    @classmethod
    def from_config(cls, cfg: KavConfig, section: str, level: int | None = None, path: str | None = None,
                    append: bool | None = None) -> EventLog:
        """An event log configured by ``[<section>]`` (ReportFileName, ReportLevel, ...) and ``[locale]``."""
        return cls(
            path=path if path is not None else cfg.get(section, "ReportFileName"),
            level=cfg.get(section, "ReportLevel") if level is None else level,
            permission=cfg.get(section, "ReportFilePermission"),
            append=cfg.get(section, "Append") if append is None else append,
            date_format=cfg.get("locale", "DateFormat"),
            time_format=cfg.get("locale", "TimeFormat"),
        )

    def _open(self) -> None:
        """Open the report file so that whoever can write its directory cannot aim it elsewhere.

        aveserver opens its log as root, possibly in a directory the filter's account owns: a
        symlink planted there is refused (O_NOFOLLOW), a FIFO does not block (O_NONBLOCK), a
        hard link to another file (st_nlink > 1) or anything but a regular file is refused, and
        ``Append=no`` truncates only after those checks, never by O_TRUNC at open time."""
        assert self.path
        # also the guide's /tmp/logfile.log, where anyone could plant a link to /etc/shadow
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        existed = os.path.lexists(self.path)
        try:
            fd = os.open(self.path, flags, self.permission)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(exc.errno, "is a symbolic link; refusing to write a log through it", self.path) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "is not a regular file; refusing to write a log to it", self.path)
            if st.st_nlink > 1:
                raise OSError(errno.EMLINK, "has other hard links; refusing to write a log to it", self.path)
            os.set_blocking(fd, True)
            if self._truncate_pending:
                os.ftruncate(fd, 0)
                self._truncate_pending = False
            if not existed:
                os.fchmod(fd, self.permission)  # the umask must not widen or narrow the admin's choice
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def reconfigure(self, cfg: KavConfig, section: str) -> None:
        """Take ``[<section>]``'s settings from a reloaded configuration (smtpscanner's SIGHUP): the
        same object, so everything holding this log follows.  The new file is opened first, with
        the same checks; if that fails (OSError) this log is left exactly as it was.  ``Append=no``
        truncates at a start only, never at a reload (that would erase the lines about it)."""
        fresh = EventLog.from_config(cfg, section, append=True)
        with self._lock:
            old, self._fd, fresh._fd = self._fd, fresh._fd, None
            self.path, self.level, self.permission = fresh.path, fresh.level, fresh.permission
            self.date_format, self.time_format = fresh.date_format, fresh.time_format
        if old is not None:
            os.close(old)

    def reopen(self) -> None:
        """Reopen the file (after logrotate moved it; aveserver calls this on SIGHUP)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self.path:
                self._open()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def format(self, level: int, message: str, when: float | None = None) -> str:
        t = time.localtime(when)
        stamp = f"{time.strftime(self.date_format, t)} {time.strftime(self.time_format, t)}"
        return f"[{stamp} {_letter(level)}] {_one_line(message)}\n"

    def log(self, level: int, message: str) -> None:
        if level != FATAL and level > self.level:
            return
        line = self.format(level, message)
        with self._lock:
            if self._fd is not None:
                os.write(self._fd, line.encode("utf-8", "replace"))
            else:
                self._stream.write(line)
                self._stream.flush()

    def fatal(self, message: str) -> None:
        self.log(FATAL, message)

    def error(self, message: str) -> None:
        self.log(ERROR, message)

    def warning(self, message: str) -> None:
        self.log(WARNING, message)

    def info(self, message: str) -> None:
        self.log(INFO, message)

    def activity(self, message: str) -> None:
        self.log(ACTIVITY, message)

    def debug(self, message: str) -> None:
        self.log(DEBUG, message)


# -- syslog ---------------------------------------------------------------------------------------
SYSLOG_SOCKET = os.environ.get("KAV_SYSLOG_SOCKET", "/dev/log")  # elsewhere in a chroot or container
LOG_MAIL, LOG_ERR = 2, 3  # facility and severity numbers of RFC 3164


def to_syslog(ident: str, message: str, severity: int = LOG_ERR, path: str | None = None) -> bool:
    """Send one line to the system log (facility mail) without the stdlib ``syslog`` module, whose
    socket is fixed and whose failures are silent; False when no syslog daemon listens.

    For what must reach the administrator even when our own report file cannot be opened (a
    spawned smtpscanner refusing a session because kav4mailservers.conf is broken)."""
    import socket

    line = f"<{LOG_MAIL * 8 + severity}>{ident}[{os.getpid()}]: {_one_line(message)}".encode("utf-8", "replace")
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        try:
            with socket.socket(socket.AF_UNIX, kind) as s:
                s.settimeout(1.0)
                s.connect(path or SYSLOG_SOCKET)
                s.sendall(line if kind == socket.SOCK_DGRAM else line + b"\n")
            return True
        except OSError:
            continue
    return False
