"""Incremental updates: ``<db>-<version>.cdiff`` turns version N-1 of a container into version N.

Layout, as ClamAV's mirrors publish it: a gzip-compressed text script, then ``:`` and a digital
signature over the compressed bytes.  The script edits the container's member files line by line:

    OPEN <file>                          start editing a member (a new one is created empty)
    ADD <line>                           append a line to the open member
    DEL <n> <start>                      delete original line n (1-based), which must begin with <start>
    XCHG <n> <start> <new line>          replace original line n (must begin with <start>)
    CLOSE                                end editing the open member
    UNLINK <file>                        remove a member

Line numbers refer to the member as it was when OPENed, so edits never shift each other.  Any
other command (ClamAV also has MOVE) is refused and the caller falls back to the full container.

Trust: the signature is checked with the engine's verifier (runtime/engine/dsig.py) under
``[path] BasesPublicKey`` — the textbook-RSA-over-MD5 scheme of the CVD header, computed over the
compressed script.  ClamAV's own cdiffs are signed with a newer scheme (SHA-256 based) that this
engine does not implement, so with ClamAV's key they fail verification and keepup2date downloads
the full daily container instead: slower, never less safe.  A private mirror signing with its own
key (tests/support/updater.py shows how) gets incremental updates.

The result is written as a ``.cld`` (a plain tar behind a header carrying the new version), which
aveserver loads without a signature check because every piece it was built from was verified
(runtime/engine/cvd.py says the same for ClamAV's own .cld files).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import time
import zlib

from runtime.engine.cvd import Container, build_header
from runtime.engine.dsig import PublicKey, SignatureInvalid, verify

MAX_SCRIPT = 256 * 1024**2
MAX_COMMANDS = 5_000_000
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_FILE = re.compile(r"([a-z0-9_]+)-(\d{1,10})\.cdiff")


class CdiffError(ValueError):
    """The diff is malformed, unsigned, or does not fit the container it is applied to."""


def parse_name(name: str) -> tuple[str, int] | None:
    m = _FILE.fullmatch(name)
    return (m.group(1), int(m.group(2))) if m else None


def verify_cdiff(data: bytes, key: PublicKey, where: str) -> bytes:
    """Check the signature and return the decompressed script (bounded)."""
    cut = data.rfind(b":")
    if cut <= 0:
        raise CdiffError(f"{where}: no digital signature after the script")
    body, dsig = data[:cut], data[cut + 1:].strip()
    try:
        verify(hashlib.md5(body).hexdigest(), dsig.decode("ascii", "replace"), key)
    except SignatureInvalid as exc:
        raise CdiffError(f"{where}: {exc}") from None
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        script = dec.decompress(body, MAX_SCRIPT + 1)
    except zlib.error as exc:
        raise CdiffError(f"{where}: script not gzip-compressed: {exc}") from None
    if len(script) > MAX_SCRIPT:
        raise CdiffError(f"{where}: script larger than {MAX_SCRIPT} bytes")
    return script


def apply_script(members: dict[str, bytes], script: bytes, where: str) -> dict[str, bytes]:
    """The members after the script; the input is not modified."""
    out = dict(members)
    current: str | None = None
    original: list[bytes] = []
    deleted: set[int] = set()
    replaced: dict[int, bytes] = {}
    added: list[bytes] = []
    lines = script.split(b"\n")
    if len(lines) > MAX_COMMANDS:
        raise CdiffError(f"{where}: more than {MAX_COMMANDS} commands")
    for no, raw in enumerate(lines, 1):
        line = raw.rstrip(b"\r")
        if not line:
            continue
        at = f"{where}:{no}"
        cmd, _, rest = line.partition(b" ")
        if cmd == b"OPEN":
            if current is not None:
                raise CdiffError(f"{at}: OPEN while {current} is open")
            current = _member(rest, at)
            original = out.get(current, b"").split(b"\n")
            if original and original[-1] == b"":
                original.pop()
            deleted, replaced, added = set(), {}, []
        elif cmd == b"ADD":
            _need(current, at, "ADD")
            added.append(rest)
        elif cmd in (b"DEL", b"XCHG"):
            _need(current, at, cmd.decode())
            num, _, tail = rest.partition(b" ")
            if not num.isdigit() or not 1 <= int(num) <= len(original):
                raise CdiffError(f"{at}: {cmd.decode()} line {num[:20]!r} outside {current} "
                                 f"({len(original)} lines)")
            n = int(num)
            start, new = (tail, None) if cmd == b"DEL" else tail.partition(b" ")[::2]
            if not original[n - 1].startswith(start):
                raise CdiffError(f"{at}: line {n} of {current} does not start with {start[:40]!r}: "
                                 "the diff is for another version")
            if n in deleted or n in replaced:
                raise CdiffError(f"{at}: line {n} of {current} edited twice")
            if new is None:
                deleted.add(n)
            else:
                replaced[n] = new
        elif cmd == b"CLOSE":
            _need(current, at, "CLOSE")
            assert current is not None
            kept = [replaced.get(i, ln) for i, ln in enumerate(original, 1) if i not in deleted]
            body = kept + added
            out[current] = b"\n".join(body) + (b"\n" if body else b"")
            current = None
        elif cmd == b"UNLINK":
            if current is not None:
                raise CdiffError(f"{at}: UNLINK while {current} is open")
            name = _member(rest, at)
            if name not in out:
                raise CdiffError(f"{at}: UNLINK {name}: no such member")
            del out[name]
        else:
            raise CdiffError(f"{at}: unsupported command {cmd[:20].decode('ascii', 'replace')!r}")
    if current is not None:
        raise CdiffError(f"{where}: script ends with {current} still open")
    return out


def _member(rest: bytes, at: str) -> str:
    name = rest.decode("ascii", "replace").strip()
    if not _NAME.fullmatch(name) or ".." in name:
        raise CdiffError(f"{at}: member name {name[:60]!r} is not a plain file name")
    return name


def _need(current: str | None, at: str, cmd: str) -> None:
    if current is None:
        raise CdiffError(f"{at}: {cmd} without OPEN")


def write_cld(base: Container, members: dict[str, bytes], version: int) -> bytes:
    """A ``.cld``: plain tar of ``members`` behind a header with the new version."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    payload = buf.getvalue()
    sigs = sum(1 for name, data in members.items() if not name.endswith((".info", ".cfg", ".ign", ".ign2"))
               for ln in data.splitlines() if ln.strip() and not ln.startswith(b"#"))
    stime = int(time.time())
    stamp = time.strftime("%d %b %Y %H-%M +0000", time.gmtime(stime))
    head = build_header(stamp, version, sigs, base.header.flevel, hashlib.md5(payload).hexdigest(), "",
                        "keepup2date", stime)
    return head + payload


def build_cdiff(script: bytes, n: int, d: int) -> bytes:
    """A signed diff (for a private mirror's own key; the tests build their mirror with it)."""
    from runtime.engine.dsig import sign

    body = gzip.compress(script, mtime=0)
    return body + b":" + sign(hashlib.md5(body).hexdigest(), n, d).encode("ascii")
