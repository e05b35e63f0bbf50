"""Hash signatures (.hdb/.hsb/.mdb/.msb) in one memory-mapped binary table, not Python objects.

ClamAV's main+daily hold millions of hash records.  As Python dicts of strings they would cost
around 200 bytes each in every worker; here they are written once per database into a file of
fixed-width records and mapped read-only, so the pre-forked workers share the page cache and only
the pages a lookup touches become resident (PSS, issue 12).

Layout (little-endian)::

    b"KAVHASH2" u32 ntables u32 reserved
    ntables × (u8 kind, u8 algo, u16 reclen, u32 count, u64 offset)   -- table directory
    u64 names_offset u64 names_length
    per table: u64 bucket_start[BUCKETS + 1] (byte offsets into the records),
               records: digest | u32 size (0xFFFFFFFF: any) | u32 name offset
    names: NUL-terminated names

Records are grouped in ``BUCKETS`` buckets by the digest's first bits; a lookup scans one bucket
(about a thousand records at ClamAV's size) with ``bytes.find``.  Sizes are checked per record.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
from pathlib import Path

ALGOS = ("md5", "sha1", "sha256")
DIGEST_LEN = {"md5": 16, "sha1": 20, "sha256": 32}
KINDS = ("file", "section")
BUCKET_BITS = 12
BUCKETS = 1 << BUCKET_BITS
ANY_SIZE = 0xFFFFFFFF
MAGIC = b"KAVHASH2"
_DIR = struct.Struct("<BBHIQ")


class HashBuilder:
    """Collects records during parsing; ``write`` produces the mapped file."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[int, int], list[bytearray]] = {}
        self.counts: dict[tuple[int, int], int] = {}
        self.names = bytearray()
        self._name_at: dict[bytes, int] = {}

    def _name(self, name: bytes) -> int:
        off = self._name_at.get(name)
        if off is None:
            off = len(self.names)
            self.names += name + b"\0"
            if len(self._name_at) < 200_000:  # dedupe the repeated names; unique ones are not remembered
                self._name_at[name] = off
        return off

    def add(self, kind: str, algo: str, digest: bytes, size: int | None, name: bytes) -> None:
        key = (KINDS.index(kind), ALGOS.index(algo))
        table = self.buckets.get(key)
        if table is None:
            table = self.buckets[key] = [bytearray() for _ in range(BUCKETS)]
            self.counts[key] = 0
        rec = digest + struct.pack("<II", ANY_SIZE if size is None else size, self._name(name))
        table[int.from_bytes(digest[:2], "big") >> (16 - BUCKET_BITS)] += rec
        self.counts[key] += 1

    def write(self, path: Path) -> None:
        """Write the table file (a temporary name, then renamed: readers never see half a file)."""
        keys = sorted(self.buckets)
        head = len(MAGIC) + 8 + _DIR.size * len(keys) + 16
        pos = head
        directory = []
        for key in keys:
            length = 8 * (BUCKETS + 1) + sum(len(b) for b in self.buckets[key])
            directory.append((key, pos, length))
            pos += length
        names_off = pos
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hashdb-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(MAGIC + struct.pack("<II", len(keys), 0))
                for (kind, algo), off, _length in directory:
                    fh.write(_DIR.pack(kind, algo, DIGEST_LEN[ALGOS[algo]] + 8, self.counts[(kind, algo)], off))
                fh.write(struct.pack("<QQ", names_off, len(self.names)))
                for key, _off, _length in directory:
                    starts, at = [], 0
                    for b in self.buckets[key]:
                        starts.append(at)
                        at += len(b)
                    starts.append(at)
                    fh.write(struct.pack(f"<{BUCKETS + 1}Q", *starts))
                    for b in self.buckets[key]:
                        fh.write(b)
                fh.write(self.names)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with_suppress_unlink(tmp)
            raise


def with_suppress_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class HashTable:
    """A mapped table file; lookups are thread-safe (read-only) and shared across forks."""

    def __init__(self, path: Path | None = None) -> None:
        self.tables: dict[tuple[int, int], tuple[int, int, int]] = {}  # key -> (offset, reclen, count)
        self.mm: mmap.mmap | None = None
        self.names_off = self.names_len = 0
        if path is None:
            return
        with open(path, "rb") as fh:
            self.mm = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
        mm = self.mm
        if mm[:8] != MAGIC:
            raise ValueError(f"{path}: not a hash table file")
        (ntables, _r) = struct.unpack_from("<II", mm, 8)
        pos = 16
        for _ in range(ntables):
            kind, algo, reclen, count, off = _DIR.unpack_from(mm, pos)
            self.tables[(kind, algo)] = (off, reclen, count)
            pos += _DIR.size
        self.names_off, self.names_len = struct.unpack_from("<QQ", mm, pos)

    def count(self, kind: str | None = None) -> int:
        return sum(c for (k, _a), (_o, _r, c) in self.tables.items() if kind is None or KINDS[k] == kind)

    def has(self, kind: str, algo: str) -> bool:
        return (KINDS.index(kind), ALGOS.index(algo)) in self.tables

    def lookup(self, kind: str, algo: str, digest: bytes, size: int) -> str | None:
        entry = self.tables.get((KINDS.index(kind), ALGOS.index(algo)))
        if entry is None or self.mm is None:
            return None
        off, reclen, _count = entry
        mm = self.mm
        b = int.from_bytes(digest[:2], "big") >> (16 - BUCKET_BITS)
        lo, hi = struct.unpack_from("<QQ", mm, off + 8 * b)
        base = off + 8 * (BUCKETS + 1)
        start, end = base + lo, base + hi
        pos = mm.find(digest, start, end)
        while pos >= 0:
            if (pos - start) % reclen == 0:
                rsize, name_at = struct.unpack_from("<II", mm, pos + len(digest))
                if rsize == size or rsize == ANY_SIZE:
                    return self._name(name_at)
            pos = mm.find(digest, pos + 1, end)
        return None

    def _name(self, at: int) -> str:
        assert self.mm is not None
        start = self.names_off + at
        end = self.mm.find(b"\0", start, self.names_off + self.names_len)
        return self.mm[start:end].decode("utf-8", "replace")

    def names(self) -> list[str]:
        """Every distinct name in the table (for --list-viruses)."""
        if self.mm is None or not self.names_len:
            return []
        blob = self.mm[self.names_off : self.names_off + self.names_len]
        return [n.decode("utf-8", "replace") for n in set(blob.split(b"\0")) if n]
