"""A record of an MTA's configuration tree (content, mode, owner, link target) to compare later.

The uninstall promise is "byte for byte": the record keeps a SHA-256 of every regular file plus its
size, mode, uid and gid, the target of every symlink and the mode/owner of every directory; two
records are equal only if all of that is. Differences are listed one per line so a failing scenario
says exactly which file changed and how.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    kind: str  # "file", "dir", "link", "other"
    mode: int
    uid: int
    gid: int
    size: int = 0
    digest: str = ""  # sha256 for files, target for links

    def describe(self) -> str:
        what = self.digest[:12] if self.kind == "file" else self.digest
        return f"{self.kind} {stat.S_IMODE(self.mode):04o} {self.uid}:{self.gid} {self.size} {what}".rstrip()


Snapshot = dict[str, Entry]


def _entry(path: Path) -> Entry:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return Entry("link", st.st_mode, st.st_uid, st.st_gid, 0, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return Entry("dir", st.st_mode, st.st_uid, st.st_gid)
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 16), b""):
                h.update(block)
        return Entry("file", st.st_mode, st.st_uid, st.st_gid, st.st_size, h.hexdigest())
    return Entry("other", st.st_mode, st.st_uid, st.st_gid)


def take(root: Path, paths: tuple[str, ...] | list[str]) -> Snapshot:
    """Record `paths` (absolute paths inside `root`, files or trees) as they are now."""
    snap: Snapshot = {}
    for inside in paths:
        top = root / inside.lstrip("/")
        if not top.exists() and not top.is_symlink():
            continue
        snap[inside] = _entry(top)
        if top.is_dir() and not top.is_symlink():
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    full = Path(dirpath) / name
                    snap["/" + str(full.relative_to(root))] = _entry(full)
    return snap


def compare(before: Snapshot, after: Snapshot) -> list[str]:
    """Every difference, as 'path: what' lines; empty when the trees are identical."""
    out: list[str] = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        if a is None:
            out.append(f"{path}: added ({b.describe() if b else ''})")
        elif b is None:
            out.append(f"{path}: removed (was {a.describe()})")
        else:
            out.append(f"{path}: {a.describe()} -> {b.describe()}")
    return out
