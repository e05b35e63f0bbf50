"""The iChecker database (guide 6.3.1): files found clean are not scanned again while unchanged.

The guide searches by file name and compares "its current condition" with the stored one.  The
condition here is device, inode, size, mtime and ctime (nanoseconds): a rewrite in place changes
mtime, ``touch -m`` back to an old time still changes ctime, and a file replaced by another one
under the same name changes the inode.  ctime cannot be set by an unprivileged user, so a file
cannot be swapped for a virus while keeping the stored condition without root.

Only CLEAN verdicts are stored, together with the *database version* (a digest of the files of
``BasesPath``, ``database_version``) and the scan options that could change a verdict (``-e`` flags).
When either differs from the stored one, every record is dropped: a database update invalidates
the whole cache, as it must, since a new signature can turn a clean file into an infected one.

Storage is SQLite (atomic commits, safe against a crash mid-run, one writer: the kavscanner parent
process); paths are stored as bytes so any file name round-trips.  The file is created 0600: it
lists file names of whoever ran the scan.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clean (
    path BLOB PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER, mtime INTEGER, ctime INTEGER
) WITHOUT ROWID;
"""

Condition = tuple[int, int, int, int, int]


def database_version(bases: str) -> str:
    """A digest of every file in the database directory (name and content).

    Computed without loading the engine, so a run over an unchanged tree needs no engine at all;
    any change to the database (a keepup2date update, an added file) changes it.
    """
    h = hashlib.sha256()
    try:
        names = sorted(os.listdir(bases)) if os.path.isdir(bases) else [""]
    except OSError:
        names = []
    for name in names:
        path = os.path.join(bases, name) if name else bases
        if not os.path.isfile(path):
            continue
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def condition(st: os.stat_result) -> Condition:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class IChecker:
    def __init__(self, path: str, version: str, batch: int = 500) -> None:
        self.path = path
        self.version = version
        self.batch = batch
        self.pending: list[tuple[bytes, int, int, int, int, int]] = []
        self.invalidated = False
        d = os.path.dirname(path) or "."
        os.makedirs(d, exist_ok=True)
        if not os.path.exists(path):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        row = self.db.execute("SELECT v FROM meta WHERE k='version'").fetchone()
        if row is None or row[0] != version:
            # New database (or new scan options): nothing stored before can be trusted any more.
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM clean")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (version,))
            self.db.execute("COMMIT")
            self.invalidated = row is not None
        self.known: dict[bytes, Condition] = {}
        for p, *cond in self.db.execute("SELECT path, dev, ino, size, mtime, ctime FROM clean"):
            self.known[p] = tuple(cond)  # type: ignore[assignment]

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def unchanged(self, path: str, st: os.stat_result) -> bool:
        """Whether ``path`` was found clean under this database and has not changed since."""
        return self.known.get(os.fsencode(path)) == condition(st)

    def record_clean(self, path: str, st: os.stat_result) -> None:
        self.pending.append((os.fsencode(path), *condition(st)))
        if len(self.pending) >= self.batch:
            self.flush()

    def forget(self, path: str) -> None:
        """A file found not clean (or acted upon) must be scanned again next time."""
        key = os.fsencode(path)
        if key in self.known:
            self.known.pop(key)
            self.db.execute("DELETE FROM clean WHERE path=?", (key,))

    def flush(self) -> None:
        if not self.pending:
            return
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT OR REPLACE INTO clean VALUES (?,?,?,?,?,?)", self.pending)
        self.db.execute("COMMIT")
        self.pending.clear()

    def close(self) -> None:
        self.flush()
        self.db.close()
