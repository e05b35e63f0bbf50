"""Unpackers for the container kinds the engine looks into: zip, tar, gzip, bzip2, xz, uuencode.

Everything happens in memory: a member's name is only ever used to label results, never to
create a file.  Decompression runs in bounded chunks charged to the scan's Budget first, so a
bomb is stopped by a limit before it can exhaust memory.  MIME lives in mime.py because curing
needs to rebuild the message.

A zip member of at least ``Limits.stream_member_min`` bytes (declared) is not unpacked here: it
is handed over as a source of chunks (``Member.chunks``) that the engine streams through its
matchers (runtime/engine/streamscan.py), so a 35 MB member is never held whole (issue 20).  Zip
is the one kind where this pays: its members can be re-read from the archive when the stream
cannot clear them, and it is what mail carries.
"""

from __future__ import annotations

import binascii
import bz2
import copy
import io
import itertools
import lzma
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .limits import Budget, Corrupted, Protected
from .verdict import safe_name

CHUNK = 1 << 20


@dataclass(slots=True)
class Member:
    """One unpacked object, or the reason it could not be unpacked (``error`` set), or a big one
    to be streamed (``chunks`` set, ``data`` empty).

    ``chunks(charge)`` reads the member from the start in CHUNK pieces; with ``charge`` every piece
    is charged to the scan's Budget as it is produced (the first reading), without for a second
    reading of the same bytes.  It raises Corrupted for a member that cannot be read to its end.
    """

    name: str
    data: bytes = b""
    error: Exception | None = None
    chunks: Callable[[bool], Iterator[bytes]] | None = None


_UU_BEGIN = re.compile(rb"^begin(?:-base64)? [0-7]{3,4} ([^\r\n]+)\r?$", re.M)


def identify(data: bytes) -> str | None:
    """The container kind of ``data`` from its magic bytes (MIME is tested separately)."""
    head = data[:8]
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and len(data) > 10 and data[4:10] == b"\x31\x41\x59\x26\x53\x59":
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if len(data) >= 512 and data[257:262] == b"ustar":
        return "tar"
    if (data.startswith(b"begin ") or b"\nbegin " in data) and _UU_BEGIN.search(data):
        return "uue"
    return None


# -- stream decompressors -------------------------------------------------------------------------
def _stream(data: bytes, new: Callable[[], object], budget: Budget, kind: str) -> bytes:
    """Decompress concatenated streams of one kind, charging every chunk to the budget."""
    out = bytearray()
    pos = 0
    while True:
        dec = new()
        src = data[pos:]
        while True:
            try:
                chunk = dec.decompress(src, CHUNK)  # type: ignore[attr-defined]
            except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as exc:
                raise Corrupted(f"{kind}: {exc}") from None
            src = b""
            if chunk:
                budget.charge(len(chunk), len(out) + len(chunk), len(data))
                out += chunk
            if dec.eof:  # type: ignore[attr-defined]
                break
            if not chunk and dec.needs_input:  # type: ignore[attr-defined]
                raise Corrupted(f"{kind}: truncated stream")
        rest = dec.unused_data  # type: ignore[attr-defined]
        pos = len(data) - len(rest)
        if not rest or not identify(rest) == kind:
            return bytes(out)


class _ZlibAdapter:
    """zlib's decompressobj with the eof/needs_input interface of bz2 and lzma."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=31)
        self._pending = b""

    def decompress(self, src: bytes, max_length: int) -> bytes:
        buf = self._pending + src
        out = self._d.decompress(buf, max_length)
        self._pending = self._d.unconsumed_tail
        return out

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def needs_input(self) -> bool:
        return not self._pending and not self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data


class _PendingAdapter:
    """bz2/lzma decompressors keep their own pending input; expose the same interface."""

    def __init__(self, dec: object) -> None:
        self._d = dec

    def decompress(self, src: bytes, max_length: int) -> bytes:
        return self._d.decompress(src, max_length)  # type: ignore[attr-defined]

    @property
    def eof(self) -> bool:
        return self._d.eof  # type: ignore[attr-defined]

    @property
    def needs_input(self) -> bool:
        return self._d.needs_input  # type: ignore[attr-defined]

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data  # type: ignore[attr-defined]


_DECOMPRESSORS: dict[str, Callable[[], object]] = {
    "gzip": _ZlibAdapter,
    "bzip2": lambda: _PendingAdapter(bz2.BZ2Decompressor()),
    "xz": lambda: _PendingAdapter(lzma.LZMADecompressor()),
}
_SUFFIX = {"gzip": (".gz", ".tgz"), "bzip2": (".bz2", ".tbz2"), "xz": (".xz", ".txz")}


def _inner_name(outer: str, kind: str) -> str:
    base = outer.rsplit("/", 1)[-1]
    for suf in _SUFFIX[kind]:
        if base.endswith(suf):
            return base[: -len(suf)] + (".tar" if suf.startswith(".t") else "")
    return base


# -- archives -------------------------------------------------------------------------------------
def _zip_members(data: bytes, budget: Budget) -> Iterator[Member]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError, NotImplementedError) as exc:
        # NotImplementedError: a central directory claiming a newer zip version (found by
        # tests/fuzz/test_fuzz_engine.py; it escaped the scan, so the message was retried forever).
        raise Corrupted(f"zip: {exc}") from None
    for info in infos:
        if info.filename.endswith("/"):  # not is_dir(): it raises IndexError on an empty name (fuzz)
            continue
        budget.member()
        name = safe_name(info.filename)
        if info.flag_bits & 0x1:
            yield Member(name, error=Protected("encrypted member"))
            continue
        if info.file_size >= budget.limits.stream_member_min:
            yield Member(name, chunks=lambda charge, info=info: _zip_chunks(zf, info, budget, charge))
            continue
        # BytesIO, not a bytearray: its buffer is a bytes object grown in place and handed over by
        # getvalue() without a copy, so a member is held once, not twice (issue 20).
        out = io.BytesIO()
        try:
            for chunk in _zip_chunks(zf, info, budget, True):
                out.write(chunk)
        except Corrupted as exc:
            yield Member(name, error=exc)
            continue
        yield Member(name, out.getvalue())
        del out


_ZIP_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, lzma.LZMAError,
                    NotImplementedError)  # NotImplementedError: an unsupported compression method


def _zip_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget, charge: bool) -> Iterator[bytes]:
    """One zip member in CHUNK pieces (see Member.chunks); a read error is Corrupted, a limit LimitExceeded."""
    produced = 0
    try:
        pieces = _zip_bounded(zf, info) if info.compress_type in _BOUNDED else _zip_read(zf, info)
        for chunk in pieces:
            produced += len(chunk)
            if charge:
                budget.charge(len(chunk), produced, info.compress_size)
            yield chunk
    except _ZIP_READ_ERRORS as exc:
        raise Corrupted(f"zip: {exc}") from None


def _zip_read(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """Stored and deflated members through zipfile, whose reads of those are bounded by the size asked."""
    with zf.open(info) as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


# zipfile hands bzip2 and LZMA members' compressed bytes to their decompressors without an output
# limit: a read of 1 MiB from a 530-byte zip holding 512 MiB of zeros decompressed all 512 MiB in
# one call (1 GiB peak RSS) before the first chunk could be charged to the scan limits.  These two
# methods are decompressed here, CHUNK at a time, from the member's raw bytes.
_BOUNDED = (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_RAW_PIECE = 1 << 16


def _zip_raw(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's bytes as stored, read by zipfile (local header checked) as if not compressed."""
    raw = copy.copy(info)
    raw.compress_type = zipfile.ZIP_STORED
    raw.file_size = info.compress_size
    del raw.CRC  # the CRC is of the decompressed bytes: checked in _zip_bounded
    with zf.open(raw) as fh:
        while piece := fh.read(_RAW_PIECE):
            yield piece


def _lzma_member(raw: Iterator[bytes], file_size: int) -> tuple[lzma.LZMADecompressor, bytes]:
    """A zip LZMA member (APPNOTE 5.8.8): version (2 bytes), properties size (2), the LZMA1
    properties (lc/lp/pb byte, dictionary size), then the raw stream.  The decoder and what of
    the input follows the properties."""
    head = b""
    for piece in raw:
        head += piece
        if len(head) >= 4 + 5:
            break
    if len(head) < 4:
        raise EOFError("LZMA member shorter than its header")
    psize = int.from_bytes(head[2:4], "little")
    if psize != 5:
        raise lzma.LZMAError(f"LZMA properties of {psize} bytes (5 expected)")
    if len(head) < 4 + psize:
        raise EOFError("LZMA member shorter than its header")
    d, dict_size = head[4], int.from_bytes(head[5:9], "little")
    if d >= 9 * 5 * 5:
        raise lzma.LZMAError(f"invalid LZMA properties byte {d}")
    lc, lp, pb = d % 9, (d // 9) % 5, d // 45
    # No match reaches further back than the output so far, which stops at the recorded size: a
    # dictionary beyond that (the header may claim 4 GiB) would only be memory for nothing.
    dict_size = max(4096, min(dict_size, file_size))
    dec = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": lp, "pb": pb, "dict_size": dict_size}])
    return dec, head[4 + psize:]


def _zip_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A bzip2 or LZMA member decompressed CHUNK at a time; its size and CRC-32 checked as zipfile
    checks them (output past the recorded size is dropped, a short or altered member is an error)."""
    raw = _zip_raw(zf, info)
    dec: bz2.BZ2Decompressor | lzma.LZMADecompressor
    if info.compress_type == zipfile.ZIP_BZIP2:
        dec, first = bz2.BZ2Decompressor(), b""
    else:
        dec, first = _lzma_member(raw, info.file_size)
    left, crc = info.file_size, 0
    for piece in itertools.chain((first,), raw):
        out = dec.decompress(piece, CHUNK)
        while True:
            out = out[:left]
            if out:
                left -= len(out)
                crc = zlib.crc32(out, crc)
                yield out
            if left <= 0 or dec.eof or dec.needs_input or not out:  # not out: never spin without progress
                break
            out = dec.decompress(b"", CHUNK)
        if left <= 0 or dec.eof:
            break
    if crc != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")


def _tar_members(data: bytes, budget: Budget) -> Iterator[Member]:
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Corrupted(f"tar: {exc}") from None
    while True:
        try:
            info = tf.next()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise Corrupted(f"tar: {exc}") from None
        if info is None:
            return
        if not info.isfile():
            continue
        budget.member()
        end = info.offset_data + info.size
        if end > len(data):
            raise Corrupted(f"tar: member {safe_name(info.name)!r} is truncated")
        budget.charge(info.size, info.size, info.size)
        yield Member(safe_name(info.name), data[info.offset_data : end])


def _uue_members(data: bytes, budget: Budget) -> Iterator[Member]:
    for m in _UU_BEGIN.finditer(data):
        budget.member()
        name = safe_name(m.group(1).decode("latin-1").strip())
        out = bytearray()
        pos = m.end() + 1
        ended = False
        while pos < len(data):
            nl = data.find(b"\n", pos)
            line = data[pos : nl if nl >= 0 else len(data)].rstrip(b"\r")
            pos = (nl + 1) if nl >= 0 else len(data)
            if line == b"end":
                ended = True
                break
            if not line or line == b"`":
                continue
            try:
                chunk = binascii.a2b_uu(line)
            except binascii.Error:
                # tolerate encoders that pad lines differently: decode the declared length only
                try:
                    n = (line[0] - 32) & 63
                    chunk = binascii.a2b_uu(line[: 1 + (n * 4 + 2) // 3])
                except (binascii.Error, IndexError):
                    yield Member(name, error=Corrupted("uuencode: bad line"))
                    break
            budget.charge(len(chunk), len(out) + len(chunk), len(data))
            out += chunk
        else:
            if not ended:
                yield Member(name, error=Corrupted("uuencode: missing 'end'"))
                continue
        if ended:
            yield Member(name, bytes(out))


def members(kind: str, data: bytes, outer_name: str, budget: Budget) -> Iterator[Member]:
    """The members of a container of ``kind``; raises Corrupted for an unreadable container."""
    if kind == "zip":
        yield from _zip_members(data, budget)
    elif kind == "tar":
        yield from _tar_members(data, budget)
    elif kind == "uue":
        yield from _uue_members(data, budget)
    else:
        budget.member()
        yield Member(_inner_name(outer_name, kind), _stream(data, _DECOMPRESSORS[kind], budget, kind))
