"""Crash-safe file replacement shared by every component that writes a file.

A reader (or a power cut) must only ever see the old file or the new one: write a temp file in
the same directory, fsync it, rename it over the target, fsync the directory.  The target's mode
and owner are kept, so an admin's 0640 root:kluser stays 0640 root:kluser.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def atomic_write(
    path: str | os.PathLike[str], data: bytes, mode: int | None = None, owner: tuple[int, int] | None = None
) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``mode``/``owner`` apply to a new file; an existing file keeps its own unless they are given.
    An ``owner`` given explicitly is always applied (failing if this process may not); a kept
    owner only when running as root.  The directory entry itself is replaced: a symlink at
    ``path`` becomes a regular file, its target is never written.
    """
    target = Path(path)
    directory = target.parent
    keep_mode, keep_owner = 0o644, None
    if mode is None or owner is None:
        try:
            st = target.stat()
            keep_mode, keep_owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
        except FileNotFoundError:
            pass
    final_mode = keep_mode if mode is None else mode
    final_owner = owner if owner is not None else keep_owner
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if final_owner is not None and (owner is not None or os.geteuid() == 0):
                os.fchown(fh.fileno(), *final_owner)
            # chmod after chown: chown clears set-id bits (qmail's 04711 queue.kav55).
            os.fchmod(fh.fileno(), final_mode)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_trusted(path: str | os.PathLike[str], owners: tuple[int, ...], limit: int = 65536) -> bytes | None:
    """Up to ``limit`` bytes of a file another program wrote (a pid file, a daemon's state or
    scoreboard), or None: read only when it is a regular file (never through a link, never
    blocking on a FIFO) owned by root or one of ``owners`` and writable by its owner alone, so
    nobody else can plant what the reader is about to act on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, *owners) or st.st_mode & 0o022:
            return None
        return os.pread(fd, limit, 0)
    finally:
        os.close(fd)
