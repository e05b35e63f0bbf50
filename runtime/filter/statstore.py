"""The statistics store: AVStatistics (guide 6.8.3) kept in SQLite for the console and ``/metrics``.

The AVStatistics text file is the guide's format for collectors; the console needs to ask "how
many INFECTED per hour last week" and Prometheus needs monotonic totals, across restarts and
across the pre-forked smtpscanner processes.  One SQLite file in WAL mode gives exactly that: each
process opens its own connection (after the fork), every message is one short transaction that
appends its event rows and bumps the running totals, and readers never block writers.

Counting rules (what the console and the metrics show):

* ``messages``: one per delivered group part, by the AVStatistics status word (OK, INFECTED, ...);
  a part answered 4xx is not counted there (the MTA sends it again) but under ``tempfail`` with
  its reason.
* ``detections``: one per virus name per part.
* ``bytes`` and the scan-duration histogram: one per message as received.

Nothing here may decide a message's fate: every error is swallowed (and the store is retried at
most once a minute), the way :class:`runtime.filter.stats.Statistics` treats its file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

#: Upper bounds (seconds) of the scan-duration histogram; Prometheus' ``le`` labels.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    t INTEGER NOT NULL, status TEXT NOT NULL, names TEXT NOT NULL, sender TEXT NOT NULL,
    rcpts INTEGER NOT NULL, size INTEGER NOT NULL, seconds REAL NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_t ON events (t);
CREATE TABLE IF NOT EXISTS totals (
    metric TEXT NOT NULL, label TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (metric, label));
"""


def status_word(status: str) -> str:
    """The guide's result word of an outcome status (the same words AVStatistics writes)."""
    return {"Clean": "OK", "not_checked": "NOT_CHECKED"}.get(status, status.upper())


def tempfail_reason(reply: str) -> str:
    """A bounded label for why a part was answered 4xx, from the reply smtpscanner gave."""
    text = reply.lower()
    for needle, reason in (("aveserver unavailable", "aveserver_unavailable"), ("maxchecktime", "scan_timeout"),
                           ("quarantine", "quarantine"), ("forwardmailer", "forward"), ("next hop", "forward"),
                           ("internal error", "internal")):
        if needle in text:
            return reason
    return "other"


@dataclass(frozen=True)
class Part:
    """One group part of a message as the store records it."""

    status: str  # guide word: OK, INFECTED, ..., or DEFERRED
    names: tuple[str, ...]
    sender: str
    rcpts: int
    reason: str = ""  # tempfail reason when DEFERRED


class StatStore:
    def __init__(self, path: str | os.PathLike[str], keep_days: int = 400) -> None:
        self.path = str(path)
        self.keep_days = keep_days
        self._local = threading.local()  # one connection per thread and process (kavconsole is threaded)
        self._failed_at = 0.0
        self._writes = 0

    # -- connection ----------------------------------------------------------------------
    def connect(self, readonly: bool = False) -> sqlite3.Connection:
        """A connection of this process (a pre-forked child never uses its parent's)."""
        db = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid():
            return db
        if readonly:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        else:
            # 0640 (SQLite gives its -wal and -shm files the same mode): senders are personal data
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640))
            db = sqlite3.connect(self.path, timeout=5.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # statistics: a power cut may lose the last ones
            db.executescript(_SCHEMA)
        db.execute("PRAGMA busy_timeout=5000")
        self._local.db, self._local.pid = db, os.getpid()
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid():
            db.close()
        self._local.db = None

    # -- writing (smtpscanner) ----------------------------------------------------------
    def record(self, parts: Iterable[Part], size: int, seconds: float, when: float | None = None) -> bool:
        """Record one message; False (and nothing raised) when the store cannot be written."""
        now = time.time() if when is None else when
        if self._failed_at and now - self._failed_at < 60:
            return False
        try:
            db = self.connect()
            with db:
                self._record(db, list(parts), size, seconds, int(now))
            self._failed_at = 0.0
        except (sqlite3.Error, OSError):
            self._failed_at = now
            self.close()
            return False
        self._writes += 1
        if self._writes % 1000 == 0:
            self.prune(now)
        return True

    @staticmethod
    def _record(db: sqlite3.Connection, parts: list[Part], size: int, seconds: float, t: int) -> None:
        bump: dict[tuple[str, str], float] = {}

        def add(metric: str, label: str, n: float = 1) -> None:
            bump[(metric, label)] = bump.get((metric, label), 0) + n

        for p in parts:
            db.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)",
                       (t, p.status, ",".join(p.names), p.sender, p.rcpts, size, seconds, p.reason))
            if p.status == "DEFERRED":
                add("tempfail", p.reason or "other")
                continue
            add("messages", p.status)
            for name in p.names:
                add("detections", name)
        add("bytes", "", size)
        add("duration_sum", "", seconds)
        add("duration_count", "")
        le = next((b for b in BUCKETS if seconds <= b), None)
        add("duration_bucket", "+Inf" if le is None else repr(le))
        db.executemany("INSERT INTO totals VALUES (?,?,?) ON CONFLICT (metric, label) "
                       "DO UPDATE SET value = value + excluded.value",
                       [(m, lbl, n) for (m, lbl), n in bump.items()])

    def prune(self, now: float | None = None) -> None:
        """Drop event rows older than keep_days; the totals (the metrics) are kept."""
        cutoff = int((time.time() if now is None else now) - self.keep_days * 86400)
        try:
            with self.connect() as db:
                db.execute("DELETE FROM events WHERE t < ?", (cutoff,))
        except sqlite3.Error:
            pass

    # -- reading (kavconsole) -----------------------------------------------------------
    def totals(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        if not os.path.exists(self.path):
            return out
        for metric, label, value in self.connect().execute("SELECT metric, label, value FROM totals"):
            out.setdefault(metric, {})[label] = value
        return out

    def series(self, start: float, end: float, step: int) -> tuple[list[int], dict[str, list[int]]]:
        """Message parts per status in buckets of ``step`` seconds: (bucket starts, {status: counts})."""
        start_b = int(start) // step * step
        n = max(1, (int(end) - start_b + step - 1) // step)
        starts = [start_b + i * step for i in range(n)]
        counts: dict[str, list[int]] = {}
        if os.path.exists(self.path):
            rows = self.connect().execute(
                "SELECT (t - ?) / ?, status, COUNT(*) FROM events WHERE t >= ? AND t < ? GROUP BY 1, 2",
                (start_b, step, start_b, start_b + n * step))
            for idx, status, c in rows:
                counts.setdefault(status, [0] * n)[int(idx)] += c
        return starts, counts

    def top_viruses(self, start: float, end: float, limit: int = 10) -> list[tuple[str, int]]:
        found: dict[str, int] = {}
        if os.path.exists(self.path):
            for (names,) in self.connect().execute(
                    "SELECT names FROM events WHERE t >= ? AND t <= ? AND names != ''", (int(start), int(end))):
                for name in names.split(","):
                    found[name] = found.get(name, 0) + 1
        return sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    def latency(self, start: float, end: float) -> dict[str, float]:
        """Mean and maximum scan time of the messages in the period, and their number."""
        if not os.path.exists(self.path):
            return {"count": 0, "mean": 0.0, "max": 0.0}
        c, mean, mx = self.connect().execute(
            "SELECT COUNT(*), AVG(seconds), MAX(seconds) FROM events WHERE t >= ? AND t <= ?",
            (int(start), int(end))).fetchone()
        return {"count": c or 0, "mean": mean or 0.0, "max": mx or 0.0}
