"""Event logs in the guide's format (6.8): ``[date time L] STRING``.

One module for every component, so administrators can grep all logs alike.  ``L`` is the first
letter of the level's name (F fatal, E errors, W warning, I info, A activity, D debug); date and
time follow ``[locale] DateFormat``/``TimeFormat`` (6.7).  Fatal errors are written whatever the
level (6.8).  Each line goes out in one ``write(2)`` on an ``O_APPEND`` descriptor, so the
worker processes of aveserver can share one log without interleaving lines.
"""

from __future__ import annotations

import os
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
    def from_config(cls, cfg: KavConfig, section: str, level: int | None = None, path: str | None = None) -> EventLog:
        """An event log configured by ``[<section>]`` (ReportFileName, ReportLevel, ...) and ``[locale]``."""
        return cls(
            path=path if path is not None else cfg.get(section, "ReportFileName"),
            level=cfg.get(section, "ReportLevel") if level is None else level,
            permission=cfg.get(section, "ReportFilePermission"),
            append=cfg.get(section, "Append"),
            date_format=cfg.get("locale", "DateFormat"),
            time_format=cfg.get("locale", "TimeFormat"),
        )

    def _open(self) -> None:
        assert self.path
        # O_NOFOLLOW: root writes reports to paths like the guide's /tmp/logfile.log, where anyone
        # could plant a link to /etc/shadow; a log is never reached through a symbolic link.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        if self._truncate_pending:
            flags |= os.O_TRUNC
            self._truncate_pending = False
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        existed = os.path.exists(self.path)
        fd = os.open(self.path, flags, self.permission)
        if not existed:
            os.fchmod(fd, self.permission)  # the umask must not widen or narrow the admin's choice
        self._fd = fd

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
