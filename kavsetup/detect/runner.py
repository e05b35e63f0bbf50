"""Run an MTA's own tool (``postconf``, ``exim -bV``) inside the inspected tree — only when it
can really run there.

Why so careful: under ``--root`` the binary may be for another OS (a FreeBSD image), another
CPU, or lack its libraries (a tree holding only the package's files).  Running it anyway costs a
fork and produces confusing errors, and running the *host's* binary would report the host's
facts.  So we run only if: the file is an ELF executable for this machine's architecture and
OS ABI, its program interpreter (``PT_INTERP``) exists inside the tree, and — when the tree is
not ``/`` — we are root and can ``chroot`` into it.  Otherwise callers fall back to files and
the package database.  argv lists only, never a shell.
"""

from __future__ import annotations

import os
import struct
import subprocess
from functools import cache
from pathlib import PurePosixPath

from kavsetup.detect.rootfs import RootFS

TIMEOUT = 15.0
_SAFE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C"}


@cache
def _host_machine() -> tuple[int, int] | None:
    """(EI_CLASS, e_machine) of the running interpreter."""
    try:
        with open("/proc/self/exe", "rb") as handle:
            head = handle.read(64)
    except OSError:
        return None
    if head[:4] != b"\x7fELF":
        return None
    endian = "<" if head[5] == 1 else ">"
    return head[4], struct.unpack_from(f"{endian}H", head, 18)[0]


def _interpreter(head: bytes) -> str | None:
    """PT_INTERP of an ELF image (64-bit or 32-bit), '' when static, None when not parseable."""
    is64, endian = head[4] == 2, "<" if head[5] == 1 else ">"
    try:
        if is64:
            phoff, = struct.unpack_from(f"{endian}Q", head, 32)
            phentsize, phnum = struct.unpack_from(f"{endian}HH", head, 54)
        else:
            phoff, = struct.unpack_from(f"{endian}I", head, 28)
            phentsize, phnum = struct.unpack_from(f"{endian}HH", head, 42)
        for i in range(phnum):
            off = phoff + i * phentsize
            ptype, = struct.unpack_from(f"{endian}I", head, off)
            if ptype == 3:  # PT_INTERP
                if is64:
                    p_offset, = struct.unpack_from(f"{endian}Q", head, off + 8)
                    p_size, = struct.unpack_from(f"{endian}Q", head, off + 32)
                else:
                    p_offset, = struct.unpack_from(f"{endian}I", head, off + 4)
                    p_size, = struct.unpack_from(f"{endian}I", head, off + 16)
                return head[p_offset:p_offset + p_size].rstrip(b"\0").decode("ascii", "replace")
    except struct.error:
        return None
    return ""


def why_not_runnable(fs: RootFS, binary: PurePosixPath) -> str:
    """'' when ``binary`` can run inside the tree, else the reason (for the report)."""
    head = fs.read_bytes_head(binary, 65536)
    if head is None:
        return f"{binary} not found"
    if head[:4] != b"\x7fELF":
        return f"{binary} is not an ELF executable"
    host = _host_machine()
    endian = "<" if head[5] == 1 else ">"
    machine = struct.unpack_from(f"{endian}H", head, 18)[0]
    if host is None or (head[4], machine) != host:
        return f"{binary} is built for another architecture"
    if head[7] not in (0, 3):  # ELFOSABI_SYSV / ELFOSABI_GNU(Linux)
        return f"{binary} is built for another operating system (ELF OS ABI {head[7]})"
    interp = _interpreter(head)
    if interp is None:
        return f"{binary}: unreadable ELF program headers"
    if interp and not fs.exists(interp):
        return f"{binary} needs {interp}, absent from the tree"
    if str(fs.root) != "/" and os.geteuid() != 0:
        return "running a binary inside --root needs root (chroot)"
    return ""


def run_in_root(fs: RootFS, argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    """Run ``argv`` (argv[0] an in-system path) inside the tree; None when it cannot run or
    fails to start.  Exit status is left to the caller."""
    if why_not_runnable(fs, PurePosixPath(argv[0])):
        return None
    command = argv if str(fs.root) == "/" else ["chroot", str(fs.root), *argv]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                              env=_SAFE_ENV, stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
