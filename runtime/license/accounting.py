"""The licence accounting store (guide 5.4.1): licensed users and traffic, per hour per day.

Only messages with status **Clean** count.  A *licensed user* is a sender or recipient address that
matches ``[smtpscan.license] LicenseDomains`` (POSIX regexes, the same matcher as group masks);
licensed traffic is the size of each Clean message (as scanned, line ends LF), once per message.

One sqlite database in WAL mode in ``[path] LicenseStatePath``: every pre-forked smtpscanner
process opens its own connection and adds in one ``BEGIN IMMEDIATE`` transaction per message, so
no count is lost to a concurrent writer; a committed transaction survives ``kill -9`` of the
process (WAL with synchronous=NORMAL loses nothing on a process crash, only possibly the last
transactions on a power cut).  The database holds plain addresses and is created 0600 for the
filter's account (privacy): ``licensemanager -i`` shows only counts.

The same store keeps when each kind of licence notice was last sent, so "once every 24 hours" and
"at each start" hold across all processes of the filter (``claim_*`` are atomic).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.config.values import compile_posix

DB_NAME = "accounting.db"
DAY = 86400.0
RETRY_WINDOW = 7 * DAY  # how long a counted message is remembered (an MTA gives up after ~5 days)
SCHEMA = """
CREATE TABLE IF NOT EXISTS hourly (day TEXT NOT NULL, hour INTEGER NOT NULL, bytes INTEGER NOT NULL,
                                   messages INTEGER NOT NULL, PRIMARY KEY (day, hour));
CREATE TABLE IF NOT EXISTS users (address TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS users_last_seen ON users (last_seen);
CREATE TABLE IF NOT EXISTS notices (kind TEXT PRIMARY KEY, last_sent REAL NOT NULL, start_id TEXT);
CREATE TABLE IF NOT EXISTS counted (digest BLOB PRIMARY KEY, at REAL NOT NULL);
"""


@dataclass(frozen=True)
class Usage:
    users: int
    today_bytes: int
    hourly: list[int]  # today's bytes per local hour 0..23


class Accounting:
    def __init__(self, directory: str | Path, domains: list[str] | None = None, readonly: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.domains = [compile_posix(p) for p in (domains or [])]
        self.readonly = readonly
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._since_prune = 0

    # -- connection ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if self.readonly:
            # "readonly": adds nothing and never creates the store (sqlite may still touch -shm).
            db = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=10, check_same_thread=False,
                                 isolation_level=None)
        else:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Created 0600 before sqlite sees it: sqlite gives -wal/-shm the database's mode.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
        db.execute("PRAGMA busy_timeout=10000")
        self._db = db
        return db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _write(self, fn):  # noqa: ANN001, ANN202 - one IMMEDIATE transaction, retried while busy
        with self._lock:
            db = self._connect()
            for attempt in range(50):
                try:
                    db.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    time.sleep(0.01 * (attempt + 1))
            else:
                raise sqlite3.OperationalError("accounting store stayed locked")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

    # -- accounting ------------------------------------------------------------------------
    def licensed(self, addresses: list[str]) -> list[str]:
        """The addresses inside LicenseDomains, lower-cased, without duplicates or the null sender."""
        out: dict[str, None] = {}
        for a in addresses:
            a = a.strip().lower()
            if a and any(p.search(a) for p in self.domains):
                out[a] = None
        return list(out)

    def record(self, size: int, addresses: list[str], now: float | None = None, digest: bytes | None = None) -> bool:
        """Count one Clean message: its size, and its licensed users; False if ``digest`` was counted.

        The filter counts a message after the next hop took it and before it answers the MTA.  If it
        dies in between, the MTA sends the message again: ``digest`` (envelope + data) makes that
        second pass count nothing, so a kill -9 neither loses nor doubles a message.
        """
        now = time.time() if now is None else now
        t = time.localtime(now)
        day, hour = time.strftime("%Y-%m-%d", t), t.tm_hour
        users = self.licensed(addresses)

        def tx(db: sqlite3.Connection) -> bool:
            if digest is not None:
                cur = db.execute("INSERT OR IGNORE INTO counted (digest, at) VALUES (?, ?)", (digest, now))
                if cur.rowcount != 1:
                    return False
                self._since_prune += 1
                if self._since_prune >= 1000:  # bounded: retries come within days, not weeks
                    db.execute("DELETE FROM counted WHERE at < ?", (now - RETRY_WINDOW,))
                    self._since_prune = 0
            db.execute("INSERT INTO hourly (day, hour, bytes, messages) VALUES (?, ?, ?, 1) "
                       "ON CONFLICT (day, hour) DO UPDATE SET bytes = bytes + excluded.bytes, "
                       "messages = messages + 1", (day, hour, size))
            db.executemany("INSERT INTO users (address, first_seen, last_seen) VALUES (?, ?, ?) "
                           "ON CONFLICT (address) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
                           [(u, now, now) for u in users])
            return True

        return self._write(tx)

    def usage(self, since: float = 0.0, now: float | None = None) -> Usage:
        """Users seen since ``since`` (the key's start) and today's traffic by hour."""
        if self.readonly and not self.path.exists():
            return Usage(0, 0, [0] * 24)
        now = time.time() if now is None else now
        day = time.strftime("%Y-%m-%d", time.localtime(now))
        with self._lock:
            db = self._connect()
            (users,) = db.execute("SELECT count(*) FROM users WHERE last_seen >= ?", (since,)).fetchone()
            hourly = [0] * 24
            for hour, b in db.execute("SELECT hour, bytes FROM hourly WHERE day = ?", (day,)):
                hourly[int(hour)] = int(b)
        return Usage(int(users), sum(hourly), hourly)

    def users(self, since: float = 0.0) -> list[tuple[str, float, float]]:
        if self.readonly and not self.path.exists():
            return []
        with self._lock:
            db = self._connect()
            return [tuple(r) for r in db.execute(
                "SELECT address, first_seen, last_seen FROM users WHERE last_seen >= ? ORDER BY address", (since,))]

    # -- notice bookkeeping ----------------------------------------------------------------
    def claim_periodic(self, kind: str, now: float | None = None, period: float = DAY) -> bool:
        """True for exactly one caller per ``period``: that caller sends the notice."""
        now = time.time() if now is None else now

        def tx(db: sqlite3.Connection) -> bool:
            db.execute("INSERT OR IGNORE INTO notices (kind, last_sent, start_id) VALUES (?, 0, NULL)", (kind,))
            cur = db.execute("UPDATE notices SET last_sent = ? WHERE kind = ? AND last_sent <= ?",
                             (now, kind, now - period))
            return cur.rowcount == 1

        return self._write(tx)

    def claim_start(self, kind: str, start_id: str, now: float | None = None) -> bool:
        """True for exactly one caller per filter start (pre-forked children share ``start_id``);
        the 24-hour clock restarts with it."""
        now = time.time() if now is None else now

        def tx(db: sqlite3.Connection) -> bool:
            db.execute("INSERT OR IGNORE INTO notices (kind, last_sent, start_id) VALUES (?, 0, NULL)", (kind,))
            cur = db.execute("UPDATE notices SET last_sent = ?, start_id = ? WHERE kind = ? "
                             "AND (start_id IS NULL OR start_id != ?)", (now, start_id, kind, start_id))
            return cur.rowcount == 1

        return self._write(tx)

    def release(self, kind: str) -> None:
        """A claimed notice could not be sent: let the next message try again."""
        self._write(lambda db: db.execute("UPDATE notices SET last_sent = 0 WHERE kind = ?", (kind,)))


def start_identity(pid: int) -> str:
    """Names one start of the filter: the supervising process's pid and start time (and the boot),
    so a recycled pid is a new start and a respawned worker is not."""
    parts = [str(pid)]
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        parts.append(stat.rpartition(")")[2].split()[19])  # field 22: starttime in clock ticks
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    return ":".join(parts)
