"""The AVStatistics file (guide 6.8.3): one tab-separated line per delivered message part.

``date time<TAB>status<TAB>virus names (comma separated)<TAB>sender<TAB>recipient count`` with the
status in the guide's result words (OK, INFECTED, CURED ... and NOT_CHECKED).  Each line is one
``write(2)`` on an O_APPEND descriptor, so concurrent smtpscanner processes (spawn mode) can share
the file; a collector (Webmin's parse_avstat.pl in 5.5) reads it at intervals.
"""

from __future__ import annotations

import os
import threading
import time

from runtime.filter.notify import one_line


class Statistics:
    def __init__(self, path: str, permission: int = 0o640) -> None:
        self.path = path
        self.permission = permission
        self._lock = threading.Lock()

    def record(self, status: str, names: list[str], sender: str, recipients: list[str]) -> None:
        word = {"Clean": "OK", "not_checked": "NOT_CHECKED"}.get(status, status.upper())
        line = "\t".join([time.strftime("%Y-%m-%d %H:%M:%S"), word, one_line(",".join(names), 500),
                          one_line(sender or "<>", 300), str(len(recipients))]) + "\n"
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, self.permission)
            except OSError:
                return  # statistics never decide a message's fate
            try:
                os.write(fd, line.encode("utf-8", "replace"))
            finally:
                os.close(fd)
