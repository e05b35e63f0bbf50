"""The installed product keys: ``*.key`` files in ``[path] LicensePath`` (guide 3.3 step 2, 5.4.3).

Installing verifies first and writes with ``atomic_write`` (0640, group of the directory so the
filter's account can read it), so a refused or interrupted install leaves the store as it was.
Installed keys are read with O_NOFOLLOW and a size bound: a link planted in the directory is not
followed, a huge file is not read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.config import KavConfig
from runtime.fsutil import atomic_write, fsync_dir
from runtime.license import keyfile, publishers
from runtime.license.keyfile import KeyFileError, LicenceKey

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

KEY_MODE = 0o640


class StoreError(Exception):
    """A refused store operation; ``str()`` is the one line for the admin."""


@dataclass(frozen=True)
class Installed:
    path: Path
    key: LicenceKey | None
    error: str = ""


def read_bounded(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.read(fd, keyfile.MAX_SIZE + 1)
    finally:
        os.close(fd)


class KeyStore:
    def __init__(self, directory: str | Path, publishers: Callable[[], dict[str, Ed25519PublicKey]]) -> None:
        self.directory = Path(directory)
        self._publishers = publishers

    @functools.cached_property
    def trusted(self) -> dict[str, Ed25519PublicKey]:
        """The publishers' keys, read when a key is first verified: a store with no key installed
        (every program lists the store at start, 5.4.2) never loads them or cryptography."""
        return self._publishers()

    @classmethod
    def for_config(cls, cfg: KavConfig) -> KeyStore:
        return cls(cfg.get("path", "LicensePath"), lambda: publishers.for_config(cfg)[0])

    def stamp(self) -> tuple[int, int] | None:
        """Changes when a key is added or removed (the filter re-reads the store then)."""
        try:
            st = self.directory.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def installed(self) -> list[Installed]:
        """Every ``*.key`` file, verified but with dates not enforced (an expired key is listed as such)."""
        try:
            paths = sorted(p for p in self.directory.iterdir() if p.suffix == ".key")
        except FileNotFoundError:
            return []
        out = []
        for path in paths:
            try:
                key = keyfile.verify(read_bounded(path), self.trusted, check_dates=False)
            except KeyFileError as exc:
                out.append(Installed(path, None, str(exc)))
            except OSError as exc:
                out.append(Installed(path, None, exc.strerror or str(exc)))
            else:
                out.append(Installed(path, key))
        return out

    def active(self, today: dt.date | None = None) -> dict[str, LicenceKey]:
        """Per licence type, the verified key that has started and expires last (expired ones too,
        so expiry can be reported; ``key.state()`` tells)."""
        today = today or dt.date.today()
        best: dict[str, LicenceKey] = {}
        for item in self.installed():
            k = item.key
            if k is None or today < k.issued:
                continue
            if k.type not in best or k.expires > best[k.type].expires:
                best[k.type] = k
        return best

    def install(self, data: bytes, today: dt.date | None = None) -> tuple[LicenceKey, Path, bool]:
        """Verify (dates enforced) and install; returns (key, path, replaced an older copy)."""
        key = keyfile.verify(data, self.trusted, today=today)
        target = self.directory / key.file_name
        replaced = False
        if target.exists() or target.is_symlink():
            try:
                old = keyfile.parse(read_bounded(target))
            except (KeyFileError, OSError):
                raise StoreError(f"{target} exists and is not a key; remove it first") from None
            if old.serial != key.serial:
                raise StoreError(f"{target} holds another key ({old.serial}); remove it first") from None
            replaced = True
        try:
            self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            gid = self.directory.stat().st_gid
            atomic_write(target, data, mode=KEY_MODE, owner=(0, gid))
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from None
        return key, target, replaced

    def remove(self, which: str) -> Path:
        """Remove by serial (``0038-000419-0003D3EA``), its last group, or file name."""
        wanted = which.strip().upper().removesuffix(".KEY")
        for item in self.installed():
            names = {item.path.stem.upper()}
            if item.key is not None:
                names.add(item.key.serial)
            else:
                with contextlib.suppress(KeyFileError, OSError):
                    names.add(keyfile.parse(read_bounded(item.path)).serial)
            if wanted in names:
                try:
                    item.path.unlink()
                    fsync_dir(self.directory)
                except OSError as exc:
                    raise StoreError(f"cannot remove {item.path}: {exc.strerror or exc}") from None
                return item.path
        raise StoreError(f"no installed key {which!r} in {self.directory}")
