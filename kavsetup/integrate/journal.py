"""The install journal: what we changed, with before-images, kept inside the root.

Layout (in-system paths, so a packaged root carries its own journal; the state tree is the
root's OS's, runtime/layout.py: /var/lib/kav/5.5/... on Linux, /var/db/kav/5.5/... on FreeBSD)::

    /var/lib/kav/5.5/kav4mailservers/journal/journal.json   steps, states, fingerprints (0600)
    /var/lib/kav/5.5/kav4mailservers/journal/blobs/<sha256>  before-image contents (0600)

Why a journal rather than backup copies: uninstall must know, per file, what it looked like
before (bytes, mode, owner), what we left it as (hash, mode, owner) and *which* edit changed it,
so that an admin-edited file can be reversed edit by edit (certbot's reverter keeps
checkpoints for the same reason).  The journal is written and fsynced before each step is
applied (status "pending") and after it ("done"), so a crash at any instant leaves enough to
roll back.  Before-images of /etc/shadow end up here: everything is 0600 in a 0700 directory.

The directories we had to create to hold it are recorded and removed at the end of uninstall,
so install + uninstall leaves the tree identical.

Trust (issue 11, design.md "Who runs as whom"): root replays this journal, and a replayed WriteFile
puts any bytes at any path with any owner.  So the journal is trusted only when no other account
could have written it: journal.json and blobs/* regular files owned by root (or by the account
running kavsetup on a ``--root`` tree it owns), not readable or writable by group/others; every
directory from ``/`` down to the journal owned the same way and writable by nobody else (a sticky
directory such as /tmp is accepted: others cannot rename what is in it).  The package keeps the
state tree root-owned and never chowns it (docs/security.md).
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path, PurePosixPath
from typing import Any

from kavsetup.detect.osinfo import layout_of
from kavsetup.detect.rootfs import RootFS
from kavsetup.integrate.files import Image, Root, write_atomic

FORMAT = 1


class JournalError(Exception):
    pass


def _trusted_owners() -> set[int]:
    return {0, os.geteuid()}


def check_trusted_dirs(host_dir: os.PathLike[str] | str, private: int = 1) -> None:
    """Raise JournalError unless ``host_dir`` and every directory above it is safe for root to trust.

    The last ``private`` directories (the journal dir, blobs/) must also be closed to group and
    others (0700): they hold before-images of /etc/shadow."""
    path = os.path.abspath(host_dir)
    chain = [path]
    while chain[-1] != "/":
        chain.append(os.path.dirname(chain[-1]))
    for depth, d in enumerate(chain):
        try:
            st = os.lstat(d)
        except OSError as exc:
            raise JournalError(f"{d}: cannot check the journal's directory: {exc}") from exc
        if stat.S_ISLNK(st.st_mode):
            raise JournalError(f"{d}: is a symbolic link; refusing to trust the installer journal under it")
        if not stat.S_ISDIR(st.st_mode):
            raise JournalError(f"{d}: not a directory; refusing to trust the installer journal under it")
        if st.st_uid not in _trusted_owners():
            raise JournalError(f"{d}: owned by uid {st.st_uid}, not root; refusing to trust the installer "
                               "journal (another account could have planted it; see docs/security.md)")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise JournalError(f"{d}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                               "refusing to trust the installer journal (see docs/security.md)")
        if depth < private and st.st_mode & 0o077:
            raise JournalError(f"{d}: mode {stat.S_IMODE(st.st_mode):04o}, not 0700; refusing to trust "
                               "the installer journal (see docs/security.md)")


def read_trusted(path: os.PathLike[str] | str) -> bytes:
    """A journal file's bytes, opened without following links, refused unless root-owned 0600."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JournalError(f"{path}: not a regular file; refusing to trust it")
        if st.st_uid not in _trusted_owners():
            raise JournalError(f"{path}: owned by uid {st.st_uid}, not root; refusing to trust the installer "
                               "journal (another account could have planted it; see docs/security.md)")
        if st.st_mode & 0o077:
            raise JournalError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o}, not 0600; refusing to trust the "
                               "installer journal (see docs/security.md)")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


class Journal:
    def __init__(self, root: Root) -> None:
        self.root = root
        #: in the state tree of the root's OS (a FreeBSD image under --root keeps it in /var/db/kav)
        self.path = PurePosixPath(layout_of(RootFS(root.path)).journal)
        self.dir = root.host(self.path)
        self.file = self.dir / "journal.json"
        self.doc: dict[str, Any] = {}

    # -- life cycle -------------------------------------------------------------------
    def exists(self) -> bool:
        return self.file.is_file()

    def load(self) -> dict[str, Any]:
        check_trusted_dirs(self.dir)
        blobs = self.dir / "blobs"
        if os.path.lexists(blobs):
            check_trusted_dirs(blobs, private=2)
        try:
            self.doc = json.loads(read_trusted(self.file))
        except (OSError, ValueError) as exc:
            raise JournalError(f"{self.file}: unreadable journal: {exc}") from exc
        if self.doc.get("format") != FORMAT:
            raise JournalError(f"{self.file}: unknown journal format {self.doc.get('format')!r}")
        return self.doc

    def create(self, mta: str, settings: dict[str, Any], notes: list[str]) -> None:
        created: list[str] = []
        p = self.path
        chain = [*reversed(p.parents), p]
        for d in chain:
            host = self.root.host(d)
            if not os.path.lexists(host):
                os.mkdir(host, 0o700 if d == p else 0o755)
                created.append(str(d))
        (self.dir / "blobs").mkdir(mode=0o700, exist_ok=True)
        # Before-images of /etc/shadow go here: never into a directory someone else controls.
        check_trusted_dirs(self.dir / "blobs", private=2)
        self.doc = {}
        self.sweep_temporaries()  # a run killed while saving its first journal
        self.doc = {"format": FORMAT, "product": "kav4mailservers 5.5", "state": "installing",
                    "mta": mta, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "settings": settings, "notes": notes, "created_dirs": created, "steps": []}
        self.save()

    def save(self) -> None:
        write_atomic(self.file, json.dumps(self.doc, indent=1, sort_keys=True).encode(), 0o600)

    def sweep_temporaries(self) -> list[str]:
        """Remove the temporary files a killed run left behind (issue 11 item 13): the journal's own
        ``.journal.json.*.tmp``/``blobs/.*.tmp`` and, beside every path a step recorded,
        ``.<name>.*.tmp`` (runtime.fsutil.atomic_write), ``.<name>.*.kavtmp`` (older versions) and
        ``.<name>.kavtmp<pid>`` (Root.put's symlinks). Only names our own writers
        make, only regular files and symlinks (never followed), only in directories the journal names:
        a kill -9 between the temporary's creation and its rename leaves exactly these."""
        removed: list[str] = []

        def drop(path: Path) -> None:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                os.unlink(path)
                removed.append(str(path))

        for d in (self.dir, self.dir / "blobs"):
            if d.is_dir() and not d.is_symlink():
                for f in d.iterdir():
                    if f.name.startswith(".") and f.name.endswith(".tmp"):
                        drop(f)
        for step in self.doc.get("steps", []):
            for ch in step.get("changes", []):
                host = self.root.host(ch["path"])
                parent = host.parent
                if not parent.is_dir() or parent.is_symlink():
                    continue
                ours = re.compile(rf"\.{re.escape(host.name)}\.([a-z0-9_]{{8}}\.(tmp|kavtmp)|kavtmp\d+)")
                for f in parent.iterdir():
                    if ours.fullmatch(f.name):
                        drop(f)
        return removed

    def sweep_unsaved(self) -> bool:
        """A run killed while saving its very first journal leaves ``journal/`` (and ``blobs/``)
        holding only a temporary: nothing was changed yet. Remove them; True if anything was found.
        The state directory above them is the package's and stays."""
        if not self.dir.is_dir() or self.dir.is_symlink() or self.file.exists():
            return False
        check_trusted_dirs(self.dir)
        found = bool(self.sweep_temporaries())
        for d in (self.dir / "blobs", self.dir):
            try:
                os.rmdir(d)
                found = True
            except OSError:
                pass
        return found

    def remove(self) -> list[str]:
        """Delete the journal and the directories created for it (if empty).  Returns notes."""
        notes: list[str] = []
        self.sweep_temporaries()
        blobs = self.dir / "blobs"
        if blobs.is_dir():
            for f in blobs.iterdir():
                f.unlink()
            blobs.rmdir()
        if self.file.exists():
            self.file.unlink()
        for d in reversed(self.doc.get("created_dirs", [])):
            host = self.root.host(d)
            try:
                os.rmdir(host)
            except FileNotFoundError:
                pass
            except OSError:
                notes.append(f"{d}: not empty; kept")
        return notes

    # -- contents -----------------------------------------------------------------------
    @property
    def state(self) -> str:
        return str(self.doc.get("state", ""))

    @state.setter
    def state(self, value: str) -> None:
        self.doc["state"] = value
        self.save()

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.doc["steps"]

    def put_blob(self, img: Image) -> None:
        if img.kind != "file":
            return
        path = self.dir / "blobs" / img.sha256
        if not path.exists():
            write_atomic(path, img.data, 0o600)

    def image(self, fp: dict[str, Any]) -> Image:
        """Rebuild an Image from a fingerprint (+ blob for files)."""
        data = b""
        if fp["kind"] == "file":
            path = self.dir / "blobs" / str(fp["sha256"])
            try:
                data = read_trusted(path)
            except OSError as exc:
                raise JournalError(f"{path}: before-image missing: {exc}") from exc
        return Image(fp["kind"], data, int(fp["mode"]), int(fp["uid"]), int(fp["gid"]), str(fp["target"]))
