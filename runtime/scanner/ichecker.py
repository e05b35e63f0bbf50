"""The iChecker database (guide 6.3.1): files found clean are not scanned again while unchanged.

The guide searches by file name and compares "its current condition" with the stored one.  The
condition here is device, inode, size, mtime and ctime (nanoseconds): a rewrite in place changes
mtime, ``touch -m`` back to an old time still changes ctime, and a file replaced by another one
under the same name changes the inode.  ctime cannot be set by an unprivileged user, so a file
cannot be swapped for a virus while keeping the stored condition without root.

The guide's database holds "scanned **clean** files", and that is the default.  With
``[scanner.options] IcheckerKeepVerdicts=yes`` (our extension, off by default) a deterministic
non-clean verdict is remembered too (its JSON: names, statuses, member list), so an unchanged
infected file is reported and acted upon again without being read; the caller decides which
verdicts qualify and when a rescan is needed anyway (cure needs the engine's output).

Every record holds under one *database version* (a digest of the files of ``BasesPath``,
``database_version``) plus the scan settings that could change a verdict (``-e`` flags, scan
limits).  When that differs from the stored one, every record is dropped: a database update
invalidates the whole cache, as it must, since a new signature can turn a clean file into an
infected one.

Storage is SQLite (atomic commits, safe against a crash mid-run, one writer: the kavscanner parent
process).  Writes are batched: a commit per ``batch`` changes and one at the end, never one per
file.  Paths are stored as bytes so any file name round-trips.  The file is created 0600: it
lists file names of whoever ran the scan.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat

# ``objects`` replaced the clean-only ``clean`` table of the first format; an old file is upgraded
# by dropping that table (its records are only a cache: the next run scans those files again).
_SCHEMA = """
DROP TABLE IF EXISTS clean;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    path BLOB PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER, mtime INTEGER, ctime INTEGER,
    verdict BLOB
) WITHOUT ROWID;
"""

Condition = tuple[int, int, int, int, int]


def database_version(bases: str) -> str:
    """A digest of every file in the database directory: its name and its condition (device,
    inode, size, mtime and ctime, as for a scanned file).

    Computed without loading the engine, so a run over an unchanged tree needs no engine at all.
    Any change to the database changes it: keepup2date and the packages replace a file by renaming
    a new one into place (a new inode and ctime), an edit in place changes size, mtime or ctime,
    and ctime cannot be set back by anyone but root — the same trust the records themselves rest
    on.  The files' content is not read: ClamAV's main and daily databases are hundreds of
    megabytes, and hashing them took longer than the rest of a run over an unchanged tree.
    """
    h = hashlib.sha256(b"kav4ms-ichecker-db|2\0")
    try:
        names = sorted(os.listdir(bases)) if os.path.isdir(bases) else [""]
    except OSError:
        names = []
    for name in names:
        path = os.path.join(bases, name) if name else bases
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
        h.update(":".join(map(str, condition(st))).encode() + b"\0")
    return h.hexdigest()


def condition(st: os.stat_result) -> Condition:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class IChecker:
    def __init__(self, path: str, version: str, batch: int = 2000) -> None:
        self.path = path
        self.version = version
        self.batch = batch
        # Changes not yet committed; a path is in at most one of the two (flush deletes, then puts).
        self.pending: dict[bytes, tuple[bytes, int, int, int, int, int, bytes | None]] = {}
        self.dropped: list[bytes] = []
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
            self.db.execute("DELETE FROM objects")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (version,))
            self.db.execute("COMMIT")
            self.invalidated = row is not None
        self.known: dict[bytes, tuple[Condition, bytes | None]] = {}
        for p, dev, ino, size, mtime, ctime, verdict in self.db.execute("SELECT * FROM objects"):
            self.known[p] = ((dev, ino, size, mtime, ctime), verdict)

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def lookup(self, path: str, st: os.stat_result) -> tuple[bool, bytes | None]:
        """``(True, None)``: found clean under this database and unchanged since; ``(True, doc)``:
        unchanged since a remembered non-clean verdict ``doc``; ``(False, None)``: must be scanned."""
        rec = self.known.get(os.fsencode(path))
        if rec is None or rec[0] != condition(st):
            return False, None
        return True, rec[1]

    def unchanged(self, path: str, st: os.stat_result) -> bool:
        """Whether ``path`` was found clean under this database and has not changed since."""
        hit, doc = self.lookup(path, st)
        return hit and doc is None

    def record_clean(self, path: str, st: os.stat_result) -> None:
        self._record(path, st, None)

    def record_verdict(self, path: str, st: os.stat_result, doc: bytes) -> None:
        """Remember a non-clean verdict (only with IcheckerKeepVerdicts=yes; the caller checks)."""
        self._record(path, st, doc)

    def _record(self, path: str, st: os.stat_result, doc: bytes | None) -> None:
        key = os.fsencode(path)
        cond = condition(st)
        if self.known.get(key) == (cond, doc):
            return  # already stored exactly so: no write
        self.known[key] = (cond, doc)
        self.pending[key] = (key, *cond, doc)
        if len(self.pending) >= self.batch:
            self.flush()

    def forget(self, path: str) -> None:
        """A file found not clean (or acted upon) must be scanned again next time."""
        key = os.fsencode(path)
        self.pending.pop(key, None)
        if self.known.pop(key, None) is not None:
            self.dropped.append(key)
            if len(self.dropped) >= self.batch:
                self.flush()

    def flush(self) -> None:
        if not self.pending and not self.dropped:
            return
        self.db.execute("BEGIN IMMEDIATE")
        if self.dropped:
            self.db.executemany("DELETE FROM objects WHERE path=?", [(k,) for k in self.dropped])
        self.db.executemany("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?)", list(self.pending.values()))
        self.db.execute("COMMIT")
        self.pending.clear()
        self.dropped.clear()

    def close(self) -> None:
        self.flush()
        self.db.close()
