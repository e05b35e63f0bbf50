"""The scanning area (guide 6.2.1): which file-system objects one kavscanner run looks at.

The area is the paths named on the command line or, when ``-@ FILE`` is given, only the paths in
that file (6.2.1: "the application will only process the objects listed in the file"), minus
``ExcludeMask`` (shell masks on the file name) and ``ExcludeDirs`` (directories, anchored: excluding
``/dev`` excludes ``/dev`` and everything below it, never ``/home/u/development``).

What a walk of a hostile tree must not do, and how it is avoided:

- follow a symbolic link out of the area: links met while walking are never followed unless
  ``FollowSymlinks=yes``; even then a directory already visited (same device and inode) is not
  entered again, so a link loop ends.  A path named explicitly on the command line is resolved
  (the caller asked for it, like ``find -H``).
- hang on a FIFO or a device: only regular files are handed to the scanner; everything else is
  skipped and counted.  The scanner opens with ``O_NOFOLLOW|O_NONBLOCK`` and checks again with
  ``fstat`` (``runtime.scanner.scan``), because the object may be swapped after the walk saw it.
- crash on a file that vanishes or cannot be read: every ``OSError`` becomes an event in the report.
- wander into other file systems: with ``CrossFs=no`` (``-l``) a directory on another device than
  the area's root is not entered.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One object of the area: ``kind`` is ``file``, ``special`` (with ``what``), ``error``
    (with ``what`` = the reason), ``excluded`` or ``link`` (a symbolic link not followed)."""

    path: str
    kind: str
    size: int = 0
    what: str = ""
    st: os.stat_result | None = None  # for files: the lstat the walk saw (iChecker's first look)


@dataclass
class Area:
    paths: list[str]
    recursion: bool = True
    cross_fs: bool = False
    follow_symlinks: bool = False
    exclude_masks: list[str] = field(default_factory=list)
    exclude_dirs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Anchored, normalised, without trailing slash: compared component-wise in excluded_dir().
        self._dirs = [os.path.normpath(os.path.abspath(d)) for d in self.exclude_dirs if d.strip()]

    def excluded_dir(self, path: str) -> bool:
        """``/dev`` excludes ``/dev`` and ``/dev/x``, never ``/development`` (anchored prefix)."""
        for d in self._dirs:
            if d == "/" or path == d or path.startswith(d + "/"):
                return True
        return False

    def excluded_name(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, m) for m in self.exclude_masks)

    def walk(self) -> Iterator[Entry]:
        visited: set[tuple[int, int]] = set()
        named: set[str] = set()
        for raw in self.paths:
            path = os.path.normpath(os.path.abspath(raw))
            if path in named:
                continue  # the same object listed twice is scanned (and acted upon) once
            named.add(path)
            try:
                st = os.stat(path)  # named explicitly: resolve it (a link given on purpose is wanted)
            except OSError as exc:
                yield Entry(path, "error", what=exc.strerror or str(exc))
                continue
            # Named on purpose: scanned, reported and acted upon under its real name.  The scanner
            # opens with O_NOFOLLOW and actions reach the file through its directories without
            # following links (actions.Pinned), so no link may remain in the path.
            path = os.path.realpath(path)
            if self.excluded_dir(path):
                yield Entry(path, "excluded")
                continue
            if stat.S_ISDIR(st.st_mode):
                yield from self._dir(path, st.st_dev, visited)
            else:
                yield self._classify(path, st)

    def _classify(self, path: str, st: os.stat_result) -> Entry:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            if self.excluded_name(os.path.basename(path)):
                return Entry(path, "excluded")
            return Entry(path, "file", st.st_size, st=st)
        what = ("fifo" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
                else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special")
        return Entry(path, "special", what=what)

    def _dir(self, top: str, root_dev: int, visited: set[tuple[int, int]]) -> Iterator[Entry]:
        """Depth-first with an explicit stack: a tree 100 000 levels deep costs memory, not a crash."""
        stack = [top]
        while stack:
            path = stack.pop()
            try:
                st = os.stat(path)
            except OSError as exc:
                yield Entry(path, "error", what=exc.strerror or str(exc))
                continue
            key = (st.st_dev, st.st_ino)
            if key in visited:
                continue  # a loop through followed links, or the same directory named twice
            visited.add(key)
            if path != top and not self.cross_fs and st.st_dev != root_dev:
                yield Entry(path, "excluded", what="other file system")
                continue
            try:
                with os.scandir(path) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                yield Entry(path, "error", what=exc.strerror or str(exc))
                continue
            subdirs: list[str] = []
            for e in entries:
                child = os.path.join(path, e.name)
                if self.excluded_dir(child):
                    yield Entry(child, "excluded")
                    continue
                try:
                    if e.is_symlink():
                        if not self.follow_symlinks:
                            yield Entry(child, "link")
                            continue
                        cst = os.stat(child)
                        child = os.path.realpath(child)
                    else:
                        cst = e.stat(follow_symlinks=False)
                except OSError as exc:  # vanished, dangling link, no permission on the link target
                    yield Entry(child, "error", what=exc.strerror or str(exc))
                    continue
                if stat.S_ISDIR(cst.st_mode):
                    if self.recursion:
                        subdirs.append(child)
                    continue
                yield self._classify(child, cst)
            stack.extend(reversed(subdirs))


def read_list(source: str) -> list[str]:
    """The ``-@ FILE`` list (6.2.1): one path per line; ``-`` reads standard input.

    Blank lines are ignored; a line is taken as is otherwise (names may hold spaces).  Relative
    paths are taken relative to the current directory, as on the command line.
    """
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(source, "rb") as fh:
            data = fh.read()
    out = []
    for raw in data.split(b"\n"):
        line = os.fsdecode(raw.rstrip(b"\r"))
        if line.strip():
            out.append(line)
    return out
