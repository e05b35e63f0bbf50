"""The mail quarantine (guide 5.2.2, 5.2.4, 6.1.3): whole messages with envelope and reason.

Entries are encrypted at rest with AES-256-GCM (the ``cryptography`` package) under a key file
``.quarantine.key`` (0600) in the quarantine directory, so a virus kept there can neither be
read by other users nor be found and "cured" by another scanner; the file name is a digest of
envelope and content, so a message quarantined again on retry (after a 4xx) is stored once.
Files are written 0600 through a temporary file, fsync and rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.fsutil import atomic_write

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def _aesgcm() -> type[AESGCM]:
    """The cipher class, imported on first use: most smtpscanner processes (one per spawned
    ``--stdio`` session) never quarantine, and ``cryptography`` is a large share of start-up."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM

MAGIC = b"KAVQ1\n"
KEY_FILE = ".quarantine.key"
SUFFIX = ".kavq"


class QuarantineError(Exception):
    pass


@dataclass
class Entry:
    id: str
    meta: dict[str, object]
    message: bytes

    @property
    def recipients(self) -> list[str]:
        return [str(r) for r in self.meta.get("recipients", [])]  # type: ignore[union-attr]

    @property
    def sender(self) -> str:
        return str(self.meta.get("sender", ""))


class Quarantine:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _key(self, create: bool) -> bytes:
        kf = self.path / KEY_FILE
        try:
            key = kf.read_bytes()
        except FileNotFoundError:
            if not create:
                raise QuarantineError(f"{kf}: no quarantine key") from None
            key = _aesgcm().generate_key(bit_length=256)
            tmp = kf.with_name(f".{KEY_FILE}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, kf)  # never replace a key another process created meanwhile
            except FileExistsError:
                key = kf.read_bytes()
            finally:
                tmp.unlink()
        if len(key) != 32:
            raise QuarantineError(f"{kf}: not a 256-bit key")
        return key

    def store(self, sender: str, recipients: list[str], message: bytes, reason: str,
              **extra: object) -> str:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        h = hashlib.sha256()
        for item in (sender, *recipients):
            h.update(item.encode("utf-8", "surrogateescape") + b"\0")
        h.update(message)
        qid = h.hexdigest()[:32]
        meta = {"id": qid, "sender": sender, "recipients": recipients, "reason": reason,
                "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "size": len(message), **extra}
        head = json.dumps(meta, ensure_ascii=True).encode()
        plain = len(head).to_bytes(4, "big") + head + message
        nonce = os.urandom(12)
        blob = MAGIC + nonce + _aesgcm()(self._key(create=True)).encrypt(nonce, plain, MAGIC)
        # Never half-written, 0600 whatever the umask: a reader sees the old set or the new file.
        atomic_write(self.path / (qid + SUFFIX), blob, mode=0o600)
        return qid

    def ids(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.path.iterdir() if p.name.endswith(SUFFIX))

    def load(self, qid: str) -> Entry:
        if not qid or "/" in qid or qid.startswith("."):
            raise QuarantineError(f"bad quarantine id {qid!r}")
        f = self.path / (qid + SUFFIX)
        try:
            blob = f.read_bytes()
        except FileNotFoundError:
            raise QuarantineError(f"{qid}: no such quarantine entry in {self.path}") from None
        if not blob.startswith(MAGIC):
            raise QuarantineError(f"{f}: not a quarantine file")
        try:
            plain = _aesgcm()(self._key(create=False)).decrypt(blob[6:18], blob[18:], MAGIC)
        except Exception as exc:  # noqa: BLE001 - InvalidTag and friends
            raise QuarantineError(f"{f}: cannot decrypt ({exc.__class__.__name__})") from None
        n = int.from_bytes(plain[:4], "big")
        return Entry(qid, json.loads(plain[4: 4 + n]), plain[4 + n:])

    def delete(self, qid: str) -> None:
        self.load(qid)  # validates the id
        (self.path / (qid + SUFFIX)).unlink()
