"""What a path looks like at one moment (an ``Image``), and the only code that writes one.

Why images: every Edit is a pure function from the images of its paths to new images, so the
same code computes the ``--dry-run`` diff, the real apply and the journal's before/after
records, and "is this file still what we wrote?" is one equality test (content hash, kind,
mode, owner).  Writes go through ``put`` only: temp file in the same directory, fsync, chmod,
chown, rename, fsync of the directory — a reader (the MTA) sees the old file or the new one,
never half of either (temp + fsync + rename: runtime.fsutil.atomic_write).

Paths handled here are in-system ``PurePosixPath``s ("/etc/postfix/main.cf"); ``Root`` maps them
under ``--root`` without ever following an absolute symlink out of the tree for writes (writes
replace the directory entry itself).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from runtime.fsutil import atomic_write

Kind = Literal["absent", "file", "dir", "symlink"]


@dataclass(frozen=True)
class Image:
    """The state of one directory entry. ``data`` is the content of a file (b"" otherwise),
    ``target`` the text of a symlink.  Owner is numeric: names are resolved in the root's own
    /etc/passwd, never the host's."""

    kind: Kind
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""

    @property
    def exists(self) -> bool:
        return self.kind != "absent"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def fingerprint(self) -> dict[str, object]:
        """What the journal stores about an image (without its bytes)."""
        return {"kind": self.kind, "sha256": self.sha256 if self.kind == "file" else "",
                "mode": self.mode, "uid": self.uid, "gid": self.gid, "target": self.target}

    def matches(self, fp: dict[str, object]) -> bool:
        return self.fingerprint() == fp

    def text(self) -> str:
        return self.data.decode("utf-8", "surrogateescape")

    def with_text(self, text: str) -> Image:
        return replace(self, data=text.encode("utf-8", "surrogateescape"))


ABSENT = Image("absent", mode=0)


def as_posix(path: PurePosixPath | str) -> PurePosixPath:
    p = PurePosixPath(path)
    if not p.is_absolute():
        raise ValueError(f"{path}: in-system paths must be absolute")
    return p


class Root:
    """A tree treated as ``/`` (``--root``)."""

    def __init__(self, root: Path | str) -> None:
        self.path = Path(root).resolve()

    @property
    def is_live(self) -> bool:
        return self.path == Path("/")

    def host(self, path: PurePosixPath | str) -> Path:
        """The host path of the entry ``path`` names. Under ``--root`` its directories are resolved
        inside the tree, as a chroot would (an absolute symlink ``/etc -> /srv/etc`` means
        ``DIR/srv/etc``, ``..`` stops at DIR), and the result is checked to lie inside DIR; the last
        component itself is never followed (writes replace the entry). Issue 11: a symlink in a
        parent directory must not take a write, or a read, out of the tree."""
        p = as_posix(path)
        if self.is_live or p == PurePosixPath("/"):
            return self.path / p.relative_to("/")
        from kavsetup.detect.rootfs import RootFS

        parent = RootFS(self.path).resolve(p.parent)
        if parent.error:
            raise OSError(f"{p}: {parent.error} in {p.parent}; refusing to touch it")
        host = self.path / parent.target.relative_to("/") / p.name
        real = os.path.realpath(host.parent)
        if real != str(self.path) and not real.startswith(str(self.path).rstrip("/") + "/"):
            raise OSError(f"{p}: its directory leads to {real}, outside {self.path}; refusing to touch it")
        return host

    # -- reading ----------------------------------------------------------------------
    def read(self, path: PurePosixPath | str) -> Image:
        host = self.host(path)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return ABSENT
        except NotADirectoryError:
            return ABSENT
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            return Image("symlink", mode=0o777, uid=st.st_uid, gid=st.st_gid, target=os.readlink(host))
        if stat.S_ISDIR(st.st_mode):
            return Image("dir", mode=mode, uid=st.st_uid, gid=st.st_gid)
        if stat.S_ISREG(st.st_mode):
            return Image("file", host.read_bytes(), mode, st.st_uid, st.st_gid)
        raise OSError(f"{path}: not a regular file, directory or symlink; refusing to touch it")

    # -- writing ----------------------------------------------------------------------
    def text(self, path: PurePosixPath | str) -> str:
        """A regular file's text (surrogate-escaped), '' when it is absent or not a file."""
        img = self.read(path)
        return img.text() if img.kind == "file" else ""

    def put(self, path: PurePosixPath | str, image: Image) -> None:
        """Make ``path`` be ``image``, atomically where the kind allows."""
        host = self.host(path)
        current = self.read(path)
        if image.kind == "absent":
            if current.kind == "dir":
                os.rmdir(host)
            elif current.exists:
                os.unlink(host)
            _fsync_dir(host.parent)
            return
        if image.kind == "dir":
            if current.exists and current.kind != "dir":
                os.unlink(host)
            if current.kind != "dir":
                os.mkdir(host, 0o700)
            os.chown(host, image.uid, image.gid)
            os.chmod(host, image.mode)
            _fsync_dir(host.parent)
            return
        if current.kind == "dir":
            raise OSError(f"{path}: is a directory; refusing to replace it with a {image.kind}")
        if not host.parent.is_dir():
            raise OSError(f"{path}: parent directory does not exist")
        if image.kind == "symlink":
            tmp = host.parent / f".{host.name}.kavtmp{os.getpid()}"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(image.target, tmp)
            os.lchown(tmp, image.uid, image.gid)
            os.rename(tmp, host)
            _fsync_dir(host.parent)
            return
        atomic_write(host, image.data, mode=image.mode, owner=(image.uid, image.gid))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """temp + fsync + rename for the journal's own files (host paths)."""
    atomic_write(path, data, mode=mode)


class View:
    """Images as they would be after the edits applied so far, over a real root.

    ``--dry-run`` and the real apply both compute through a View, so they cannot disagree."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self.overlay: dict[PurePosixPath, Image] = {}

    def get(self, path: PurePosixPath | str) -> Image:
        p = as_posix(path)
        if p in self.overlay:
            return self.overlay[p]
        return self.root.read(p)

    def set(self, path: PurePosixPath | str, image: Image) -> None:
        self.overlay[as_posix(path)] = image
