"""The AVStatistics file (guide 6.8.3): one tab-separated line per delivered message part.

``date time<TAB>status<TAB>virus names (comma separated)<TAB>sender<TAB>recipient count`` with the
status in the guide's result words (OK, INFECTED, CURED ... and NOT_CHECKED).  Each line is one
``write(2)`` on an O_APPEND descriptor, so concurrent smtpscanner processes (spawn mode) can share
the file; a collector (Webmin's parse_avstat.pl in 5.5) reads it at intervals.

:meth:`Statistics.observe` is the console's hook: every message (delivered or deferred) also goes
to the SQLite statistics store ([console] StatisticsStore) that kavconsole's plots and ``/metrics``
read (runtime/filter/statstore.py).
"""

from __future__ import annotations

import os
import threading
import time

from runtime.filter.notify import one_line
from runtime.filter.statstore import Part, StatStore, status_word, tempfail_reason


class Statistics:
    def __init__(self, path: str, permission: int = 0o640, store: StatStore | None = None) -> None:
        self.path = path
        self.permission = permission
        self.store = store
        self._lock = threading.Lock()

    def observe(self, outcomes: list, sender: str, size: int, seconds: float) -> None:  # list[PartOutcome]
        """One message's outcomes into the statistics store (no-op without one)."""
        if self.store is None:
            return
        parts = []
        for o in outcomes:
            deferred = [r for r in o.replies.values() if not r.startswith("250")]
            parts.append(Part("DEFERRED" if deferred else status_word(o.status), tuple(o.names), sender or "<>",
                              len(o.recipients), tempfail_reason(deferred[0]) if deferred else ""))
        self.store.record(parts, size, seconds)

    def record(self, status: str, names: list[str], sender: str, recipients: list[str]) -> None:
        if not self.path:
            return
        word = status_word(status)
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
