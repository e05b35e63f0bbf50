"""Build ClamAV-format databases for tests and benches: our own RSA test key and signed CVDs.

The key is generated per test session (never ClamAV's, whose private half only ClamAV holds); the
containers follow the layout runtime/engine/cvd.py reads, so Debian's ``sigtool --info`` and
``--unpack`` can read them too.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.engine.cvd import build_header
from runtime.engine.dsig import PublicKey, sign


@dataclass(frozen=True)
class TestKey:
    """An RSA key pair in the form the CVD signature needs (modulus, public and private exponent)."""

    n: int
    e: int
    d: int

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.n, self.e, "test key")

    def write_public(self, path: Path) -> Path:
        """The ``[path] BasesPublicKey`` file: ``N E`` in decimal."""
        path.write_text(f"# kav4mailservers test key\n{self.n} {self.e}\n")
        return path


@functools.cache
def make_test_key(bits: int = 1024) -> TestKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    priv = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    nums = priv.private_numbers()
    return TestKey(nums.public_numbers.n, nums.public_numbers.e, nums.d)


def tar_members(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_cvd(path: Path, members: dict[str, bytes], key: TestKey | None = None, version: int = 1,
              sigs: int = 0, flevel: int = 90, compress: bool | None = None) -> Path:
    """Write a signed container; ``compress`` defaults to gzip for ``.cvd`` and plain tar for ``.cld``."""
    key = key or make_test_key()
    if compress is None:
        compress = path.suffix == ".cvd"
    payload = tar_members(members)
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    md5 = hashlib.md5(payload).hexdigest()
    stime = int(time.time())
    stamp = time.strftime("%d %b %Y %H-%M +0000", time.gmtime(stime))
    header = build_header(stamp, version, sigs or _count_sigs(members), flevel, md5, sign(md5, key.n, key.d),
                          "kavtest", stime)
    path.write_bytes(header + payload)
    return path


def _count_sigs(members: dict[str, bytes]) -> int:
    skip = (".info", ".cfg", ".ign", ".ign2", ".fp", ".sfp")
    return sum(sum(1 for ln in data.splitlines() if ln.strip() and not ln.startswith(b"#"))
               for name, data in members.items() if not name.endswith(skip) and name != "COPYING")


def make_pe(sections: list[bytes], entry_text: bytes = b"") -> bytes:
    """A minimal PE32 image with the given raw sections (enough for ClamAV's type and section hashes).

    File alignment 0x200: each section's raw data starts on a 512-byte boundary and its
    SizeOfRawData is its padded length, as a linker writes it.
    """
    import struct

    lfanew = 0x80
    opt_size = 0xE0
    table = lfanew + 24 + opt_size
    first = (table + 40 * len(sections) + 0x1FF) & ~0x1FF
    dos = bytearray(lfanew)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, lfanew)
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x14C, len(sections), 0, 0, 0, opt_size, 0x0102)
    opt = bytearray(opt_size)
    struct.pack_into("<HBB", opt, 0, 0x10B, 14, 0)
    struct.pack_into("<I", opt, 16, 0x1000)  # AddressOfEntryPoint
    struct.pack_into("<I", opt, 28, 0x400000)  # ImageBase
    struct.pack_into("<II", opt, 32, 0x1000, 0x200)  # Section/FileAlignment
    struct.pack_into("<I", opt, 56, 0x1000 * (len(sections) + 1))  # SizeOfImage
    struct.pack_into("<I", opt, 60, first)  # SizeOfHeaders
    struct.pack_into("<H", opt, 68, 2)  # subsystem GUI
    struct.pack_into("<I", opt, 92, 16)
    heads = bytearray()
    body = bytearray()
    ptr = first
    for k, raw in enumerate(sections):
        padded = raw + b"\0" * (-len(raw) % 0x200)
        heads += struct.pack("<8sIIIIIIHHI", f".s{k}".encode(), len(raw), 0x1000 * (k + 1), len(padded), ptr,
                             0, 0, 0, 0, 0x60000020)
        body += padded
        ptr += len(padded)
    head = bytes(dos) + coff + bytes(opt) + bytes(heads)
    return head + b"\0" * (first - len(head)) + bytes(body) + entry_text
