"""The install journal: what we changed, with before-images, kept inside the root.

Layout (in-system paths, so a packaged root carries its own journal)::

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
"""

from __future__ import annotations

import json
import os
import time
from pathlib import PurePosixPath
from typing import Any

from kavsetup.integrate.files import Image, Root, write_atomic

STATE_DIR = PurePosixPath("/var/lib/kav/5.5/kav4mailservers")
JOURNAL_DIR = STATE_DIR / "journal"
FORMAT = 1


class JournalError(Exception):
    pass


class Journal:
    def __init__(self, root: Root) -> None:
        self.root = root
        self.dir = root.host(JOURNAL_DIR)
        self.file = self.dir / "journal.json"
        self.doc: dict[str, Any] = {}

    # -- life cycle -------------------------------------------------------------------
    def exists(self) -> bool:
        return self.file.is_file()

    def load(self) -> dict[str, Any]:
        try:
            self.doc = json.loads(self.file.read_text())
        except (OSError, ValueError) as exc:
            raise JournalError(f"{self.file}: unreadable journal: {exc}") from exc
        if self.doc.get("format") != FORMAT:
            raise JournalError(f"{self.file}: unknown journal format {self.doc.get('format')!r}")
        return self.doc

    def create(self, mta: str, settings: dict[str, Any], notes: list[str]) -> None:
        created: list[str] = []
        p = JOURNAL_DIR
        chain = [*reversed(p.parents), p]
        for d in chain:
            host = self.root.host(d)
            if not os.path.lexists(host):
                os.mkdir(host, 0o700 if d == JOURNAL_DIR else 0o755)
                created.append(str(d))
        (self.dir / "blobs").mkdir(mode=0o700, exist_ok=True)
        self.doc = {"format": FORMAT, "product": "kav4mailservers 5.5", "state": "installing",
                    "mta": mta, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "settings": settings, "notes": notes, "created_dirs": created, "steps": []}
        self.save()

    def save(self) -> None:
        write_atomic(self.file, json.dumps(self.doc, indent=1, sort_keys=True).encode(), 0o600)

    def remove(self) -> list[str]:
        """Delete the journal and the directories created for it (if empty).  Returns notes."""
        notes: list[str] = []
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
                data = path.read_bytes()
            except OSError as exc:
                raise JournalError(f"{path}: before-image missing: {exc}") from exc
        return Image(fp["kind"], data, int(fp["mode"]), int(fp["uid"]), int(fp["gid"]), str(fp["target"]))
