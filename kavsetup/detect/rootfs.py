"""Read-only access to a system tree seen as ``/`` — the only way detection touches files.

Why a class: with ``--root DIR`` an absolute symlink (``/usr/sbin/sendmail ->
/etc/alternatives/sendmail``) must be followed *inside* DIR, never on the host, and every
unreadable file must become one ``Problem`` line instead of a traceback.  All paths taken and
returned are in-system ``PurePosixPath``s.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kavsetup.detect.model import Problem

_MAX_LINKS = 40  # like the kernel's MAXSYMLINKS: a loop is reported, not followed forever


@dataclass(frozen=True)
class Resolved:
    """Where a path leads: ``target`` is the final in-system path; ``chain`` every path visited
    (the path itself first); ``exists`` False for a dangling link; ``error`` set on a loop."""

    target: PurePosixPath
    chain: tuple[PurePosixPath, ...]
    exists: bool
    error: str = ""


class RootFS:
    """A tree to inspect, plus the problems found while reading it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.problems: list[Problem] = []

    # -- paths ---------------------------------------------------------------------------
    def host(self, path: PurePosixPath | str) -> Path:
        p = PurePosixPath(path)
        return self.root / (p.relative_to("/") if p.is_absolute() else p)

    def problem(self, path: PurePosixPath | str, message: str) -> None:
        entry = Problem(str(path), message)
        if entry not in self.problems:
            self.problems.append(entry)

    def _entry(self, path: PurePosixPath | str) -> Path:
        """Host path of the directory entry ``path`` names (its parent resolved in the tree,
        the last component itself not followed)."""
        p = PurePosixPath(path)
        if p == PurePosixPath("/") or p.name in ("", ".", ".."):
            return self.host(self.resolve(p).target)
        return self.host(self.resolve(p.parent).target / p.name)

    def lexists(self, path: PurePosixPath | str) -> bool:
        """True also when the entry cannot be looked at (EACCES): then reading it is attempted
        and reports "permission denied" rather than a misleading "not found"."""
        try:
            os.lstat(self._entry(path))
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            return True
        return True

    def is_symlink(self, path: PurePosixPath | str) -> bool:
        return self._entry(path).is_symlink()

    def readlink(self, path: PurePosixPath | str) -> str | None:
        try:
            return os.readlink(self._entry(path))
        except OSError:
            return None

    def resolve(self, path: PurePosixPath | str) -> Resolved:
        """Follow symlinks component by component, with absolute targets rooted at the tree."""
        pending = list(PurePosixPath(path).parts[1:])
        current = PurePosixPath("/")
        chain: list[PurePosixPath] = [PurePosixPath(path)]
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                current = current.parent
                continue
            candidate = current / part
            host = self.host(candidate)
            try:
                target = os.readlink(host) if stat.S_ISLNK(os.lstat(host).st_mode) else None
            except (FileNotFoundError, NotADirectoryError):
                target = None
            except OSError as exc:  # EACCES on a directory we may not search, ENOTDIR, ...
                return Resolved(candidate, tuple(chain), False, f"cannot read: {_reason(exc)}")
            if target is not None:
                hops += 1
                if hops > _MAX_LINKS:
                    return Resolved(candidate, tuple(chain), False, "too many levels of symbolic links")
                base = PurePosixPath("/") if target.startswith("/") else current
                rest = PurePosixPath(target).parts[1:] if target.startswith("/") else PurePosixPath(
                    target).parts
                pending = list(rest) + pending
                current = base
                if not pending:
                    break
                continue
            current = candidate
        if current not in chain:
            chain.append(current)
        return Resolved(current, tuple(chain), os.path.lexists(self.host(current)))

    def link_chain(self, path: PurePosixPath | str) -> tuple[PurePosixPath, ...]:
        """The symlink hops of ``path`` itself (not of its directories): path, target, ..."""
        hops = [PurePosixPath(path)]
        current = PurePosixPath(path)
        for _ in range(_MAX_LINKS):
            target = self.readlink(current)
            if target is None:
                break
            nxt = PurePosixPath(target) if target.startswith("/") else current.parent / target
            nxt = PurePosixPath(os.path.normpath(str(nxt)))
            hops.append(nxt)
            current = nxt
        return tuple(hops)

    # -- reading -------------------------------------------------------------------------
    def is_file(self, path: PurePosixPath | str) -> bool:
        res = self.resolve(path)
        return res.exists and self.host(res.target).is_file()

    def is_dir(self, path: PurePosixPath | str) -> bool:
        res = self.resolve(path)
        return res.exists and self.host(res.target).is_dir()

    def exists(self, path: PurePosixPath | str) -> bool:
        return self.resolve(path).exists

    def stat(self, path: PurePosixPath | str) -> os.stat_result | None:
        res = self.resolve(path)
        try:
            return os.stat(self.host(res.target)) if res.exists else None
        except OSError:
            return None

    def guard(self, what: str, exc: OSError) -> None:
        """Last resort for an OSError escaping a detector (e.g. a directory we may not search
        when not root): one problem line instead of a traceback."""
        self.problem(exc.filename or what, f"cannot read: {_reason(exc)}")

    def read_text(self, path: PurePosixPath | str, *, required: bool = False) -> str | None:
        """Text of a file, or None.  A missing file is a problem only when ``required``; a
        file that exists but cannot be read (a directory, EACCES, a dangling or looping
        symlink) is always a problem, reported as ``path: reason`` on one line."""
        p = PurePosixPath(path)
        res = self.resolve(p)
        if res.error:
            self.problem(p, res.error)
            return None
        if not res.exists:
            if self.is_symlink(p):
                self.problem(p, f"broken symbolic link (points to {res.target}, which does not exist)")
                return None
            if required:
                self.problem(p, "not found")
            return None
        host = self.host(res.target)
        try:
            mode = os.stat(host).st_mode
            if stat.S_ISDIR(mode):
                self.problem(p, "is a directory, expected a file")
                return None
            with open(host, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            self.problem(p, f"cannot read: {_reason(exc)}")
            return None
        return data.decode("utf-8", errors="replace")

    def read_bytes_head(self, path: PurePosixPath | str, size: int = 65536) -> bytes | None:
        res = self.resolve(path)
        if not res.exists:
            return None
        try:
            with open(self.host(res.target), "rb") as handle:
                return handle.read(size)
        except OSError:
            return None

    def listdir(self, path: PurePosixPath | str) -> list[str]:
        res = self.resolve(path)
        if not res.exists:
            return []
        try:
            return sorted(os.listdir(self.host(res.target)))
        except OSError as exc:
            if exc.errno != errno.ENOTDIR:
                self.problem(path, f"cannot list: {os.strerror(exc.errno or 0)}")
            return []


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EACCES:
        return "permission denied"
    return os.strerror(exc.errno) if exc.errno else str(exc)
