"""Backup of processed objects (guide 5.3.5, 6.2.4) and kavscanner's quarantine action (5.3.4).

Both stores use the mail quarantine's format (``runtime.filter.quarantine``: AES-256-GCM under a
0600 key file, JSON metadata, atomic 0600 files), so one tool and one key handling serve all
three, and a virus kept in either can neither be read by others nor found by another scanner.

Backup adds one rule of the guide: "subsequent recording of the same file to backup storage
automatically replaces its earlier copy".  Entries are named by a digest of their content, so a
small pointer ``<digest of the original path>.ref`` records which entry is the current copy of a
path; storing a new copy rewrites the pointer atomically and then deletes the older entry.

Restore writes the file back with its original mode and owner, through ``atomic_write`` (temporary
file + rename), and refuses a destination whose directory is reached through a symbolic link, so
root restoring into a user's tree cannot be redirected to ``/etc``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass

from runtime.filter.quarantine import Entry, Quarantine, QuarantineError
from runtime.fsutil import atomic_write

REF_SUFFIX = ".ref"


class BackupError(Exception):
    pass


def _ref_name(path: str) -> str:
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:32] + REF_SUFFIX


def _meta(path: str, st: os.stat_result, reason: str, kind: str) -> dict[str, object]:
    return {"kind": kind, "path": path, "path_hex": os.fsencode(path).hex(),
        "mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns}


def original_path(entry: Entry) -> str:
    hexed = entry.meta.get("path_hex")
    return os.fsdecode(bytes.fromhex(str(hexed))) if hexed else str(entry.meta.get("path", ""))


def quarantine_file(directory: str, path: str, st: os.stat_result, data: bytes, reason: str) -> str:
    """Store a scanned file in the (mail) quarantine; the caller removes the original."""
    return Quarantine(directory).store("kavscanner", [], data, reason, **_meta(path, st, reason, "kavscanner"))


@dataclass
class Backup:
    directory: str

    @property
    def store(self) -> Quarantine:
        return Quarantine(self.directory)

    def save(self, path: str, st: os.stat_result, data: bytes, reason: str) -> str:
        q = self.store
        qid = q.store("kavscanner", [], data, reason, **_meta(path, st, reason, "backup"))
        ref = os.path.join(self.directory, _ref_name(path))
        old = ""
        with contextlib.suppress(OSError):
            with open(ref, encoding="ascii") as fh:
                old = fh.read().strip()
        atomic_write(ref, qid.encode() + b"\n", mode=0o600)
        if old and old != qid:
            with contextlib.suppress(QuarantineError, OSError):
                q.delete(old)
        return qid

    def entries(self) -> list[Entry]:
        out = []
        for qid in self.store.ids():
            with contextlib.suppress(QuarantineError, OSError, ValueError):
                out.append(self.store.load(qid))
        return out

    def find(self, target: str) -> Entry:
        """``target`` is a backup id or the original path of a backed-up file."""
        q = self.store
        if len(target) == 32 and all(c in "0123456789abcdef" for c in target):
            try:
                return q.load(target)
            except QuarantineError:
                pass
        ref = os.path.join(self.directory, _ref_name(os.path.abspath(target)))
        try:
            with open(ref, encoding="ascii") as fh:
                return q.load(fh.read().strip())
        except OSError:
            raise BackupError(f"{target}: no backup copy in {self.directory}") from None
        except QuarantineError as exc:
            raise BackupError(str(exc)) from None

    def restore(self, target: str, dest: str | None = None) -> str:
        entry = self.find(target)
        out = os.path.abspath(dest or original_path(entry))
        parent = os.path.dirname(out)
        if os.path.realpath(parent) != parent:
            raise BackupError(f"{out}: refusing to restore through a symbolic link in {parent}")
        if os.path.islink(out):
            raise BackupError(f"{out}: refusing to restore over a symbolic link")
        mode = int(entry.meta.get("mode", 0o600))  # type: ignore[arg-type]
        owner = (int(entry.meta.get("uid", -1)), int(entry.meta.get("gid", -1)))  # type: ignore[arg-type]
        os.makedirs(parent, exist_ok=True)
        atomic_write(out, entry.message, mode=mode, owner=owner if os.geteuid() == 0 else None)
        return out
