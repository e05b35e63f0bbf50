"""The compiled signature cache: a database parsed once, then only mapped (issue 12 item 4).

ClamAV's main+daily hold millions of hash records and some 100 000 body and logical signatures.
Parsing them in Python at every start costs far more than clamd's whole load, and holding them as
Python objects costs hundreds of MB in every pre-forked worker.  So the first start on a new
database parses it once and writes one *entry* under ``[path] CachePath``::

    db-<key>/hashes.bin     the hash table (runtime/engine/hashdb.py), mapped read-only
    db-<key>/records.bin    every .ndb and .ldb line (with its FILE:LINE), mapped read-only
    db-<key>/meta.json      diagnostics, allow-lists, ignores, and what the prefilters need
    db-<key>/*.hs           the compiled Hyperscan databases (runtime/engine/matcher.py)

``key`` is a digest of the database's *content*: each container's MD5, verified against its
digital signature at every load (runtime/engine/cvd.py), and the SHA-256 of every other file.
The entry is built in a temporary directory and renamed into place, so a reader sees a complete
entry or none.  A warm start verifies the containers, maps the two files and loads the compiled
matchers: signatures are parsed one by one only when a prefilter reports them (``Records``), so
the tables stay in the page cache the workers share instead of in each worker's private heap,
and a reload holds the new generation's tables in the page cache, not in a second private copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

FORMAT = "2"  # bump with the entry layout (records.bin, meta.json, hashes.bin) or the parsers' output
_MAGIC = b"KAVRECS1"
_HEAD = struct.Struct("<8sII")
T = TypeVar("T")
MEMO_MAX = 4096  # parsed signatures kept per process; a scan needs a handful


def content_key(parts: list[str]) -> str:
    """The entry name for a database whose files' content digests are ``parts`` (in load order)."""
    h = hashlib.sha256(f"kav4ms-db|{FORMAT}".encode())
    for part in parts:
        h.update(part.encode() + b"\n")
    return h.hexdigest()


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class Records(Sequence[T], Generic[T]):
    """Signature lines in a mapped file, parsed on first access (a bounded memo per process)."""

    def __init__(self, mm: mmap.mmap | bytes, offsets: memoryview, base: int, parse: Callable[[str, str], T]) -> None:
        self._mm = mm
        self._offsets = offsets
        self._base = base
        self._parse = parse
        self._memo: dict[int, T] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def line(self, i: int) -> tuple[str, str]:
        """(``FILE:LINE``, the line) of record ``i``."""
        lo, hi = self._offsets[i], self._offsets[i + 1]
        where, _, line = bytes(self._mm[self._base + lo : self._base + hi]).partition(b"\0")
        return where.decode("utf-8", "replace"), line.decode("utf-8", "replace")

    def __getitem__(self, i: int) -> T:  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("Records does not slice")
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        got = self._memo.get(i)
        if got is None:
            where, line = self.line(i)
            got = self._parse(line, where)  # parsed once at build time: it cannot fail now
            with self._lock:
                if len(self._memo) >= MEMO_MAX:
                    self._memo.clear()
                self._memo[i] = got
        return got

    def __iter__(self) -> Iterator[T]:
        return (self[i] for i in range(len(self)))

    def names(self, sep: str) -> Iterator[str]:
        """Every record's name (its first field) without parsing the signatures."""
        for i in range(len(self)):
            yield self.line(i)[1].split(sep, 1)[0].strip()


def _pack(lines: list[tuple[str, str]]) -> tuple[bytes, list[int]]:
    blobs = [w.encode() + b"\0" + ln.encode() for w, ln in lines]
    offsets, at = [0], 0
    for b in blobs:
        at += len(b)
        offsets.append(at)
    return b"".join(blobs), offsets


def write_entry(cache_dir: Path, key: str, ndb: list[tuple[str, str]], ldb: list[tuple[str, str]],
                jsons: dict[str, Any], write_hashes: Callable[[Path], None]) -> Path:
    """Build ``db-<key>`` in a temporary directory and rename it into place; return its path."""
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = cache_dir / f"db-{key}"
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".db-{key[:16]}-"))
    try:
        write_hashes(tmp / "hashes.bin")
        text_n, off_n = _pack(ndb)
        text_l, off_l = _pack(ldb)
        with open(tmp / "records.bin", "wb") as fh:
            fh.write(_HEAD.pack(_MAGIC, len(ndb), len(ldb)))
            fh.write(struct.pack(f"<{len(off_n)}Q", *off_n))
            fh.write(struct.pack(f"<{len(off_l)}Q", *off_l))
            fh.write(text_n)
            fh.write(text_l)
        for name, obj in jsons.items():
            (tmp / name).write_text(json.dumps(obj, separators=(",", ":")))
        for f in tmp.iterdir():
            os.chmod(f, 0o600)
        os.chmod(tmp, 0o700)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same entry first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def prune(cache_dir: Path, keep: Path) -> None:
    """Remove other entries (and the older cache files): a running generation keeps its mappings."""
    for old in cache_dir.iterdir():
        name = old.name
        if old == keep or not (name.startswith(("db-", "hashes-", "ndb-", "ldb-")) or name.startswith(".db-")):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(old) if old.is_dir() else old.unlink()


class Entry:
    """A complete cache entry, mapped."""

    def __init__(self, path: Path, parse_ndb: Callable[[str, str], Any], parse_ldb: Callable[[str, str], Any]) -> None:
        self.path = path
        self.meta: dict[str, Any] = json.loads((path / "meta.json").read_text())
        with open(path / "records.bin", "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
        magic, n_ndb, n_ldb = _HEAD.unpack_from(mm, 0)
        if magic != _MAGIC:
            raise ValueError(f"{path}/records.bin: not a records file")
        at = _HEAD.size
        off_n = memoryview(mm)[at : at + 8 * (n_ndb + 1)].cast("Q")
        at += 8 * (n_ndb + 1)
        off_l = memoryview(mm)[at : at + 8 * (n_ldb + 1)].cast("Q")
        at += 8 * (n_ldb + 1)
        self.ndb: Records[Any] = Records(mm, off_n, at, parse_ndb)
        self.ldb: Records[Any] = Records(mm, off_l, at + off_n[-1], parse_ldb)


def open_entry(cache_dir: Path, key: str, parse_ndb: Callable[[str, str], Any],
               parse_ldb: Callable[[str, str], Any]) -> Entry | None:
    path = cache_dir / f"db-{key}"
    if not (path / "meta.json").is_file():
        return None
    try:
        entry = Entry(path, parse_ndb, parse_ldb)
        if entry.meta.get("format") == FORMAT:
            return entry
    except (OSError, ValueError, KeyError, struct.error):
        pass
    shutil.rmtree(path, ignore_errors=True)  # damaged or of another format: the caller builds it again
    return None
