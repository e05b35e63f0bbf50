"""Hash signatures (.hdb/.hsb/.mdb/.msb) in one memory-mapped table file, not Python objects.

ClamAV's main+daily hold millions of hash records.  As Python dicts of strings they would cost
around 200 bytes each in every worker, and parsing them one by one in Python would take longer
than clamd's whole start.  Here the record lines themselves become the table:

- each file's text is checked in one pass of a compiled regular expression (lines that do not
  have the canonical form ``hexdigest:size:name[:flevel]`` take the slow path, which reports
  errors by file and line or normalises the line);
- the good lines are grouped in ``BUCKETS`` buckets by the first three hex digits of their
  digest and written into a file that is mapped read-only — the pre-forked workers share the
  page cache, and only the pages a lookup touches become resident (PSS, issue 12);
- a lookup finds ``hexdigest:`` at a line start (``:hexdigest:`` in a section line, which keeps
  ClamAV's ``size:digest:name`` order) inside one bucket — about a thousand lines at ClamAV's
  size — with ``mmap.find`` and checks the size field (``*``: any size).

Every record carries its object's size (or ``*``), so before hashing anything the engine asks
the table which digests it could possibly need (``HashTable.wants``): an algorithm no record
uses is never computed, and one whose records all name sizes is computed only for objects of
one of those sizes — ClamAV's hash matcher keys on size for the same reason.  Without this,
MD5, SHA-1 and SHA-256 of every scanned object were a third of the engine's time (issue 14).
For that the table keeps, per kind and algorithm, the sorted distinct sizes and whether any
record says ``*``.

The file is part of the database's entry in the compiled cache (runtime/engine/sigcache.py),
keyed by the database's content, so a restart or a reload of unchanged files maps it without
parsing.

Layout (little endian; every u64 array 8-byte aligned)::

    b"KAVHASH5" u32 ntables u32 reserved
    ntables × (u8 kind, u8 pad[3], u32 count, u64 offset, u64 length, u64 sizes_offset)
    per table: u64 bucket_start[BUCKETS + 1] (byte offsets into the text that follows), text,
               pad to 8, then per algorithm in ALGOS: u8 any_size, u8 pad[7], u64 n, u64 size[n]
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
import tempfile
from pathlib import Path

KINDS = ("file", "section")
ALGOS = ("md5", "sha1", "sha256")
_HEX_LEN = {32: 0, 40: 1, 64: 2}  # digest length in hex -> index in ALGOS
BUCKET_DIGITS = 3
BUCKETS = 16**BUCKET_DIGITS
MAGIC = b"KAVHASH5"
_DIR = struct.Struct("<B3xIQQQ")
_SIZES = struct.Struct("<B7xQ")
_BUCKET_KEYS = [f"{b:03x}".encode() for b in range(BUCKETS)]


class HashBuilder:
    """Collects canonical record lines per kind, grouped by digest prefix.

    ``file`` lines are ``hexdigest:size:name[:flevel]``, ``section`` lines ``size:hexdigest:name``;
    digests are lower case.
    """

    def __init__(self) -> None:
        self.buckets: dict[str, dict[bytes, list[bytes]]] = {k: {} for k in KINDS}
        self.counts: dict[str, int] = {}
        # kind -> distinct (hex digest length, size field) pairs; the size field is b"*" or digits
        self.sizes: dict[str, set[tuple[int, bytes]]] = {k: set() for k in KINDS}

    def add_lines(self, kind: str, lines: list[bytes]) -> None:
        if not lines:
            return
        buckets = self.buckets[kind]
        get = buckets.get
        sizes = self.sizes[kind]
        if kind == "file":  # hexdigest:size:name
            for ln in lines:
                key = ln[:3]
                bucket = get(key)
                if bucket is None:
                    buckets[key] = [ln]
                else:
                    bucket.append(ln)
            sizes.update((len(d), sz) for d, sz, _rest in (ln.split(b":", 2) for ln in lines))
        else:  # size:hexdigest:name
            for ln in lines:
                at = ln.index(b":") + 1
                key = ln[at : at + 3]
                bucket = get(key)
                if bucket is None:
                    buckets[key] = [ln]
                else:
                    bucket.append(ln)
            sizes.update((len(d), sz) for sz, d, _rest in (ln.split(b":", 2) for ln in lines))
        self.counts[kind] = self.counts.get(kind, 0) + len(lines)

    def _size_block(self, kind: str) -> bytes:
        """Per algorithm: whether any record says ``*``, then its sorted distinct sizes."""
        out = []
        for index in range(len(ALGOS)):
            fields = {sz for n, sz in self.sizes[kind] if _HEX_LEN.get(n) == index}
            numbers = sorted(int(sz) for sz in fields if sz != b"*")
            out.append(_SIZES.pack(b"*" in fields, len(numbers)) + struct.pack(f"<{len(numbers)}Q", *numbers))
        return b"".join(out)

    def add(self, kind: str, digest: bytes, size: int | None, name: bytes) -> None:
        size_b = b"*" if size is None else b"%d" % size
        hexd = digest.hex().encode()
        line = hexd + b":" + size_b + b":" + name if kind == "file" else size_b + b":" + hexd + b":" + name
        self.add_lines(kind, [line])

    def write(self, path: Path) -> None:
        """Write the table file (a temporary name, then renamed: readers never see half a file)."""
        tables = []
        for kind in KINDS:
            if not self.counts.get(kind):
                continue
            texts, starts, at = [], [], 0
            buckets = self.buckets[kind]
            for key in _BUCKET_KEYS:
                starts.append(at)
                lines = buckets.get(key)
                if lines:
                    text = b"\n".join(lines) + b"\n"
                    texts.append(text)
                    at += len(text)
            starts.append(at)
            tables.append((KINDS.index(kind), self.counts[kind], starts, texts, at, self._size_block(kind)))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hashdb-")
        try:
            with os.fdopen(fd, "wb") as fh:
                pos = len(MAGIC) + 8 + _DIR.size * len(tables)
                directory = []
                for kind, count, _starts, _texts, size, block in tables:
                    length = 8 * (BUCKETS + 1) + size
                    sizes_at = pos + length + _pad(pos + length)
                    directory.append(_DIR.pack(kind, count, pos, length, sizes_at))
                    pos = sizes_at + len(block)
                fh.write(MAGIC + struct.pack("<II", len(tables), 0) + b"".join(directory))
                for _kind, _count, starts, texts, _size, block in tables:
                    fh.write(struct.pack(f"<{BUCKETS + 1}Q", *starts))
                    fh.writelines(texts)
                    fh.write(b"\0" * _pad(fh.tell()) + block)  # where the directory says: sizes_at
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def _pad(pos: int) -> int:
    return -pos % 8


class HashTable:
    """A mapped table file; lookups are thread-safe (read-only) and shared across forks."""

    def __init__(self, path: Path | None = None) -> None:
        self.tables: dict[str, tuple[int, int]] = {}  # kind -> (offset, count)
        # kind -> per algorithm in ALGOS: (any size, sorted distinct sizes as a view of the map)
        self.sizes: dict[str, list[tuple[bool, memoryview]]] = {}
        self.mm: mmap.mmap | None = None
        if path is None:
            return
        with open(path, "rb") as fh:
            self.mm = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
        mm = self.mm
        if mm[:8] != MAGIC:
            raise ValueError(f"{path}: not a hash table file")
        (ntables, _r) = struct.unpack_from("<II", mm, 8)
        pos = 16
        view = memoryview(mm)
        for _ in range(ntables):
            kind, count, off, _length, sizes_at = _DIR.unpack_from(mm, pos)
            self.tables[KINDS[kind]] = (off, count)
            per_algo = []
            for _algo in ALGOS:
                any_size, n = _SIZES.unpack_from(mm, sizes_at)
                start = sizes_at + _SIZES.size
                per_algo.append((bool(any_size), view[start : start + 8 * n].cast("Q")))
                sizes_at = start + 8 * n
            self.sizes[KINDS[kind]] = per_algo
            pos += _DIR.size

    def count(self, kind: str | None = None) -> int:
        return sum(c for k, (_o, c) in self.tables.items() if kind is None or k == kind)

    def wants(self, kind: str, size: int) -> tuple[str, ...]:
        """The algorithms whose digest of an object of ``size`` bytes could match a record.

        Only these need computing: a record names its object's size or ``*``, so for any other
        size a digest could never match.
        """
        per_algo = self.sizes.get(kind)
        if not per_algo:
            return ()
        out = []
        for algo, (any_size, sizes) in zip(ALGOS, per_algo, strict=True):
            if any_size:
                out.append(algo)
            elif sizes:
                i = bisect.bisect_left(sizes, size)
                if i < len(sizes) and sizes[i] == size:
                    out.append(algo)
        return tuple(out)

    def algorithms(self, kind: str) -> tuple[str, ...]:
        """The algorithms with any record of this kind (the digests worth computing before the size is known)."""
        return tuple(algo for algo, (any_size, sizes) in zip(ALGOS, self.sizes.get(kind, ()), strict=False)
                     if any_size or len(sizes))

    def lookup(self, kind: str, hexdigest: str, size: int) -> str | None:
        """The name recorded for this lower-case hex digest and size (or ``*``), if any."""
        entry = self.tables.get(kind)
        if entry is None or self.mm is None:
            return None
        off, _count = entry
        mm = self.mm
        b = int(hexdigest[:BUCKET_DIGITS], 16)
        lo, hi = struct.unpack_from("<QQ", mm, off + 8 * b)
        base = off + 8 * (BUCKETS + 1)
        start, end = base + lo, base + hi
        want = b"%d" % size
        if kind == "file":
            key = hexdigest.encode() + b":"
            pos = mm.find(key, start, end)
            while pos >= 0:
                if pos == start or mm[pos - 1] == 0x0A:
                    eol = mm.find(b"\n", pos, end)
                    fields = mm[pos + len(key) : eol].split(b":")
                    if len(fields) >= 2 and (fields[0] == b"*" or fields[0] == want):
                        return fields[1].decode("utf-8", "replace")
                pos = mm.find(key, pos + 1, end)
            return None
        key = b":" + hexdigest.encode() + b":"
        pos = mm.find(key, start, end)
        while pos >= 0:
            bol = mm.rfind(b"\n", start, pos) + 1 or start
            got = mm[bol:pos]
            if got == want or got == b"*":
                eol = mm.find(b"\n", pos, end)
                return mm[pos + len(key) : eol].split(b":")[0].decode("utf-8", "replace")
            pos = mm.find(key, pos + 1, end)
        return None

    def names(self) -> list[str]:
        """Every distinct name in the table (for --list-viruses)."""
        if self.mm is None:
            return []
        found: set[bytes] = set()
        for off, _count in self.tables.values():
            lo, hi = struct.unpack_from("<QQ", self.mm, off), struct.unpack_from("<Q", self.mm, off + 8 * BUCKETS)
            base = off + 8 * (BUCKETS + 1)
            text = self.mm[base + lo[0] : base + hi[0]]
            found.update(ln.split(b":", 3)[2] for ln in text.split(b"\n") if ln)  # same field in both kinds
        return [n.decode("utf-8", "replace") for n in found]
