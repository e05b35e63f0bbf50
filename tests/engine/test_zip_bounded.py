"""Zip members compressed with bzip2 or LZMA are decompressed a chunk at a time (containers.py).

zipfile gives those two decompressors no output limit: reading the first MiB of a 530-byte zip
holding 512 MiB of zeros decompressed all of it in one call, a gigabyte of memory in an aveserver
worker before the scan limits saw a byte ("bounded work for any input").  Here: the same bytes
as zipfile for every method, the same errors for a damaged member, and memory bounded by the
chunk size whatever the member expands to.
"""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import pytest

from runtime.engine import containers
from runtime.engine.limits import Budget, Corrupted, LimitExceeded, Limits

METHODS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
MiB = 1 << 20


def _zip(members: dict[str, bytes], method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _read(data: bytes, limits: Limits | None = None) -> dict[str, bytes | str]:
    """Every member as the engine's unpacker gives it: its bytes, or the error's text."""
    out: dict[str, bytes | str] = {}
    for m in containers.members("zip", data, "t.zip", Budget(limits or Limits())):
        if m.error is not None:
            out[m.name] = f"error: {m.error}"
        elif m.chunks is not None:
            out[m.name] = b"".join(m.chunks(True))
        else:
            out[m.name] = m.data
    return out


@pytest.mark.parametrize("method", METHODS, ids=["stored", "deflated", "bzip2", "lzma"])
def test_same_bytes_as_zipfile(method: int) -> None:
    rnd = os.urandom(300_000)
    members = {"empty": b"", "small.txt": b"hello world\n" * 10, "random.bin": rnd,
               "big.txt": (b"The quick brown fox jumps over the lazy dog.\n" * 60_000) + rnd}  # > 1 MiB: streamed
    data = _zip(members, method)
    assert _read(data) == members
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert {n: zf.read(n) for n in members} == members


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_a_damaged_member_is_corrupted_as_zipfile_says(method: int) -> None:
    payload = b"payload " * 5000
    data = bytearray(_zip({"a.txt": payload}, method))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[0]
    # a wrong CRC in the central directory and the local header
    crc = info.CRC.to_bytes(4, "little")
    bad_crc = bytes(data).replace(crc, bytes(b ^ 0xFF for b in crc))
    with pytest.raises(zipfile.BadZipFile), zipfile.ZipFile(io.BytesIO(bad_crc)) as zf:
        zf.read("a.txt")
    got = _read(bad_crc)["a.txt"]
    assert isinstance(got, str) and "Bad CRC-32" in got
    # the compressed bytes cut short (sizes left as recorded)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    cut = bytes(data[: start + info.compress_size // 2]) + bytes(data[start + info.compress_size:])
    with zipfile.ZipFile(io.BytesIO(cut)) as zf:
        with pytest.raises((zipfile.BadZipFile, EOFError, OSError, ValueError)):
            zf.read("a.txt")
    got = _read(cut)["a.txt"]
    assert isinstance(got, str) and got.startswith("error: zip:")


def test_lzma_properties_that_are_not_lzma1_are_corrupted() -> None:
    data = bytearray(_zip({"a.txt": b"x" * 1000}, zipfile.ZIP_LZMA))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 4] = 250  # properties byte beyond 9 * 5 * 5
    got = _read(bytes(data))["a.txt"]
    assert isinstance(got, str) and "invalid LZMA properties byte 250" in got
    data[start + 2] = 7  # properties size
    got = _read(bytes(data))["a.txt"]
    assert isinstance(got, str) and "LZMA properties of 7 bytes" in got


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_a_zip_bomb_member_costs_a_chunk_of_memory_not_its_size(method: int) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z, z.open("zeros", "w", force_zip64=True) as f:
        for _ in range(64):
            f.write(bytes(MiB))
    data = buf.getvalue()
    assert len(data) < 20_000  # 64 MiB of zeros
    tracemalloc.start()
    try:
        members = list(containers.members("zip", data, "bomb.zip", Budget(Limits())))
        assert members[0].chunks is not None  # big: streamed
        first = next(members[0].chunks(False))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(first) == containers.CHUNK
    # one chunk, plus for LZMA the decoder's 8 MiB dictionary (the default preset's); zipfile's own
    # read held all 64 MiB
    assert peak < 16 * MiB, f"reading one chunk held {peak / MiB:.1f} MiB"
    # and the scan limits stop it after the first chunk (ratio), as they always meant to
    with pytest.raises((LimitExceeded, Corrupted)):
        _read(data)


def test_an_lzma_header_claiming_a_4_gib_dictionary_costs_nothing_extra() -> None:
    payload = (b"abcdefgh" * 4096 + os.urandom(4096)) * 8
    data = bytearray(_zip({"a.txt": payload}, zipfile.ZIP_LZMA))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 5 : start + 9] = b"\xff\xff\xff\xff"
    tracemalloc.start()
    try:
        got = _read(bytes(data))["a.txt"]
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == payload  # the dictionary is cut to the member's size: every match still reaches
    assert peak < 4 * MiB, f"{peak / MiB:.1f} MiB"
