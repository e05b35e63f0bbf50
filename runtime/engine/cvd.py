"""ClamAV database containers: ``.cvd`` (signed, gzip tar) and ``.cld`` (local, plain tar).

Layout: a 512-byte header ``ClamAV-VDB:time:version:sigs:flevel:md5:dsig:builder:stime`` padded
with spaces, then a tar archive of the database files (``main.hdb``, ``main.ndb``, ``main.info``,
...), gzip-compressed in a CVD.  The header's MD5 covers every byte after the header and the
``dsig`` signs that MD5 (runtime/engine/dsig.py).

A ``.cld`` is what ClamAV's updater writes after applying incremental diffs to a CVD: its payload
no longer matches the MD5 the header kept, so, like clamd, we load it without the signature check
and say so in the log (the updater verified every piece it was built from).  ``verify_cld``
forces the full check for a CLD that is a plain copy of a CVD.

The tar is read as a stream and trusted in nothing: only regular files with a plain name (no
directory part, no ``..``, no links or devices), each and all together bounded in size and
number.  Members are returned in memory and never touch the filesystem.  keepup2date (guide 5.1)
verifies what it downloads with this same module before it replaces anything in BasesPath.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .dsig import CLAMAV_KEY, PublicKey, SignatureInvalid, verify

HEADER_LEN = 512
MAGIC = b"ClamAV-VDB:"
CONTAINER_SUFFIXES = (".cvd", ".cld")
MAX_MEMBERS = 512
MAX_MEMBER_BYTES = 2 * 1024**3  # ClamAV's largest members (main.hdb/.hsb) are some hundred MB
MAX_TOTAL_BYTES = 4 * 1024**3
_MEMBER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


class ContainerError(ValueError):
    """The container is malformed, tampered with or signed by another key (message names it)."""


@dataclass(frozen=True)
class Header:
    """The fields of a CVD/CLD header (``stime`` is the build time in seconds since the epoch)."""

    time: str
    version: int
    sigs: int
    flevel: int
    md5: str
    dsig: str
    builder: str
    stime: int

    def line(self) -> str:
        """The header text (without padding), as written by :func:`build_header`."""
        return ":".join(["ClamAV-VDB", self.time, str(self.version), str(self.sigs), str(self.flevel),
                         self.md5, self.dsig, self.builder, str(self.stime)])


def parse_header(raw: bytes, where: str) -> Header:
    """Parse the 512-byte header; every error names the file and the field."""
    if len(raw) < HEADER_LEN:
        raise ContainerError(f"{where}: shorter than the {HEADER_LEN}-byte CVD header")
    if not raw.startswith(MAGIC):
        raise ContainerError(f"{where}: not a ClamAV database container (no 'ClamAV-VDB:' header)")
    try:
        text = raw[:HEADER_LEN].decode("ascii").rstrip(" \0\n")
    except UnicodeDecodeError:
        raise ContainerError(f"{where}: header holds non-ASCII bytes") from None
    fields = text.split(":")
    if len(fields) < 9:
        raise ContainerError(f"{where}: header has {len(fields)} fields, expected 9")
    _, time_s, version, sigs, flevel, md5, dsig, builder, stime = fields[:9]
    nums = {}
    for key, value in (("version", version), ("sigs", sigs), ("flevel", flevel), ("stime", stime)):
        if not value.isdigit():
            raise ContainerError(f"{where}: header field {key} is {value[:20]!r}, not a number")
        nums[key] = int(value)
    return Header(time_s, nums["version"], nums["sigs"], nums["flevel"], md5.lower(), dsig, builder, nums["stime"])


def build_header(time_s: str, version: int, sigs: int, flevel: int, md5: str, dsig: str, builder: str,
                 stime: int) -> bytes:
    """A header padded to 512 bytes (for our own databases: tests, private mirrors, the bench)."""
    head = Header(time_s, version, sigs, flevel, md5, dsig, builder, stime).line().encode("ascii")
    if len(head) > HEADER_LEN:
        raise ValueError("CVD header longer than 512 bytes")
    return head + b" " * (HEADER_LEN - len(head))


@dataclass
class Container:
    """A verified container: its header and its members (name, bytes) in archive order."""

    path: Path
    header: Header
    members: list[tuple[str, bytes]]
    signed: bool  # the dsig was checked (always for .cvd)


def _payload_md5(fh: BinaryIO) -> str:
    h = hashlib.md5()
    fh.seek(HEADER_LEN)
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _members(fh: BinaryIO, where: str) -> Iterator[tuple[str, bytes]]:
    fh.seek(HEADER_LEN)
    total = 0
    try:
        with tarfile.open(fileobj=fh, mode="r|*") as tar:
            for count, info in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise ContainerError(f"{where}: more than {MAX_MEMBERS} members")
                name = info.name
                if not info.isreg():
                    raise ContainerError(f"{where}: member {name[:80]!r} is not a regular file")
                if not _MEMBER_NAME.fullmatch(name) or ".." in name:
                    raise ContainerError(f"{where}: member name {name[:80]!r} is not a plain file name")
                if info.size > MAX_MEMBER_BYTES:
                    raise ContainerError(f"{where}: member {name} is {info.size} bytes (limit {MAX_MEMBER_BYTES})")
                total += info.size
                if total > MAX_TOTAL_BYTES:
                    raise ContainerError(f"{where}: members exceed {MAX_TOTAL_BYTES} bytes together")
                member = tar.extractfile(info)
                data = member.read() if member is not None else b""
                if len(data) != info.size:
                    raise ContainerError(f"{where}: member {name} is truncated")
                yield name, data
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, ContainerError):
            raise
        raise ContainerError(f"{where}: archive unreadable: {exc}") from None


def verify_container(path: Path | str, key: PublicKey = CLAMAV_KEY, verify_cld: bool = False) -> tuple[Header, bool]:
    """Check the header, the payload's MD5 and the digital signature without unpacking anything.

    Returns the header and whether the signature was checked (a ``.cld`` is not, see above).
    A warm start uses this alone: the compiled cache (runtime/engine/sigcache.py) is keyed by the
    verified MD5, so the unpacked members are only needed when that cache is missing.
    """
    path = Path(path)
    where = str(path)
    try:
        with open(path, "rb") as fh:
            header = parse_header(fh.read(HEADER_LEN), where)
            signed = path.suffix == ".cvd" or verify_cld
            if signed:
                actual = _payload_md5(fh)
                if actual != header.md5:
                    raise ContainerError(f"{where}: MD5 of the content is {actual}, the header says {header.md5}: "
                                         "damaged or tampered with")
                try:
                    verify(header.md5, header.dsig, key)
                except SignatureInvalid as exc:
                    raise ContainerError(f"{where}: {exc}") from None
    except OSError as exc:
        raise ContainerError(f"{where}: {exc.strerror or exc}") from None
    return header, signed


def iter_members(path: Path | str) -> Iterator[tuple[str, bytes]]:
    """The members of a container already verified, one at a time (only one is ever in memory)."""
    where = str(path)
    try:
        with open(path, "rb") as fh:
            yield from _members(fh, where)
    except OSError as exc:
        raise ContainerError(f"{where}: {exc.strerror or exc}") from None


def read_container(path: Path | str, key: PublicKey = CLAMAV_KEY, verify_cld: bool = False) -> Container:
    """Verify and unpack one container; raise ContainerError naming the file and the reason."""
    path = Path(path)
    header, signed = verify_container(path, key, verify_cld)
    return Container(path, header, list(iter_members(path)), signed)
