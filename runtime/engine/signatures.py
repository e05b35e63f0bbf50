"""Signature database files in the ClamAV text formats (.hdb, .hsb, .ndb).

The product's databases live in ``[path] BasesPath`` (guide 4.2, 5.1).  We read the widely used
ClamAV text formats so that third-party sets work and ClamAV itself can be run on the very same
files for comparison (bench/engine).  Malformed lines are reported as ``FILE:LINE: message`` and
skipped; a set that yields no usable line at all from a non-empty file is refused by the caller.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

SIGNATURE_SUFFIXES = (".hdb", ".hsb", ".ndb")

# ndb Target types we can honour exactly: 0 any file, 1 PE (MZ), 6 ELF.
SUPPORTED_TARGETS = {0, 1, 6}


class SignatureError(ValueError):
    """One bad signature line (the message is ``FILE:LINE: reason``)."""


@dataclass(frozen=True, slots=True)
class HashSig:
    """A whole-object hash signature; ``size`` None means any size (``*`` in .hsb)."""

    algo: str  # "md5", "sha1" or "sha256"
    digest: bytes
    size: int | None
    name: str


@dataclass(frozen=True, slots=True)
class Offset:
    """Where a body signature must start: anywhere, at ``start`` (+maxshift), or EOF-relative."""

    kind: str  # "any", "abs", "eof"
    value: int = 0
    shift: int = 0


@dataclass(frozen=True, slots=True)
class BodySig:
    """An extended (.ndb) body signature translated into one byte regular expression."""

    name: str
    target: int
    offset: Offset
    regex: bytes  # hyperscan/Python-compatible, applied with DOTALL
    min_flevel: int | None = None
    max_flevel: int | None = None
    origin: str = ""


@dataclass
class SignatureSet:
    """Everything loaded from one BasesPath, plus the diagnostics and a content digest.

    Hash records are kept as ``{"<hexdigest>:<size>": name}`` per algorithm (``*`` for any size):
    the key is the text of the line itself, which keeps loading cheap, and a lookup only happens
    for objects whose size is in ``hash_sizes``.
    """

    hashes: dict[str, dict[str, str]] = field(default_factory=lambda: {"md5": {}, "sha1": {}, "sha256": {}})
    hash_sizes: dict[str, set[int]] = field(default_factory=lambda: {"md5": set(), "sha1": set(), "sha256": set()})
    hash_anysize: dict[str, bool] = field(default_factory=lambda: {"md5": False, "sha1": False, "sha256": False})
    body: list[BodySig] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    digest: str = ""

    @property
    def count(self) -> int:
        """Number of records, as shown in X-Anti-Virus headers (guide 6.8.4)."""
        return sum(len(v) for v in self.hashes.values()) + len(self.body)

    def add_hash(self, sig: HashSig) -> None:
        size = "*" if sig.size is None else str(sig.size)
        self.hashes[sig.algo][f"{sig.digest.hex()}:{size}"] = sig.name
        if sig.size is None:
            self.hash_anysize[sig.algo] = True
        else:
            self.hash_sizes[sig.algo].add(sig.size)


_HASH_LEN = {32: "md5", 40: "sha1", 64: "sha256"}
_NAME_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]*$")


def parse_hash_line(line: str, where: str, sha_only: bool) -> HashSig:
    """``HASH:SIZE:NAME[:FLEVEL]`` (.hdb: MD5; .hsb: SHA1/SHA256, SIZE may be ``*``)."""
    parts = line.split(":")
    if len(parts) < 3 or len(parts) > 5:
        raise SignatureError(f"{where}: expected HASH:SIZE:NAME")
    digest_hex, size_s, name = parts[0].strip().lower(), parts[1].strip(), parts[2].strip()
    algo = _HASH_LEN.get(len(digest_hex))
    if algo is None or not re.fullmatch(r"[0-9a-f]+", digest_hex):
        raise SignatureError(f"{where}: bad hash {digest_hex[:70]!r}")
    if sha_only and algo == "md5":
        raise SignatureError(f"{where}: .hsb expects SHA1 or SHA256, got an MD5")
    if not sha_only and algo != "md5":
        raise SignatureError(f"{where}: .hdb expects MD5 (use .hsb for SHA)")
    if size_s == "*":
        if not sha_only:
            raise SignatureError(f"{where}: size '*' is only allowed in .hsb")
        size = None
    elif size_s.isascii() and size_s.isdigit():  # not "²": int() refuses it
        size = int(size_s)
    else:
        raise SignatureError(f"{where}: bad size {size_s!r}")
    if not _NAME_RE.match(name):
        raise SignatureError(f"{where}: bad or empty name")
    return HashSig(algo, bytes.fromhex(digest_hex), size, name)


def _byte(v: int) -> bytes:
    return b"\\x%02x" % v


def _hex_pair(tok: str, where: str) -> bytes:
    """One hex-signature byte position: ``aa``, ``??``, ``a?`` or ``?a``."""
    hi, lo = tok[0], tok[1]
    if hi == "?" and lo == "?":
        return b"."
    if hi == "?":
        low = int(lo, 16)
        return b"[" + b"".join(_byte(h << 4 | low) for h in range(16)) + b"]"
    if lo == "?":
        high = int(hi, 16) << 4
        return b"[" + _byte(high) + b"-" + _byte(high | 0xF) + b"]"
    return _byte(int(tok, 16))


_HEX = set("0123456789abcdefABCDEF?")


def hexsig_to_regex(sig: str, where: str) -> tuple[bytes, int]:
    """Translate a ClamAV body signature into a byte regex; also return its fixed-byte count.

    Supported: ``aa`` ``??`` ``a?`` ``?a`` ``*`` ``{n}`` ``{n-m}`` ``{-n}`` ``{n-}`` and
    ``(aa|bbcc|...)`` alternatives (each alternative a run of hex pairs, ``??`` allowed).
    """
    out: list[bytes] = []
    fixed = 0
    i, n = 0, len(sig)
    while i < n:
        c = sig[i]
        if c == "*":
            out.append(b".*")
            i += 1
        elif c == "{":
            j = sig.find("}", i)
            if j < 0:
                raise SignatureError(f"{where}: unterminated '{{'")
            body = sig[i + 1 : j]
            m = re.fullmatch(r"(\d*)(-?)(\d*)", body)
            if not m or (not m.group(1) and not m.group(3)):
                raise SignatureError(f"{where}: bad jump {{{body}}}")
            a, dash, b = m.groups()
            if not dash:
                out.append(b".{%d}" % int(a))
            elif not a:
                out.append(b".{0,%d}" % int(b))
            elif not b:
                out.append(b".{%d,}" % int(a))
            else:
                lo_, hi_ = int(a), int(b)
                if lo_ > hi_:
                    raise SignatureError(f"{where}: bad jump {{{body}}} (min > max)")
                out.append(b".{%d,%d}" % (lo_, hi_))
            i = j + 1
        elif c == "(":
            j = sig.find(")", i)
            if j < 0:
                raise SignatureError(f"{where}: unterminated '('")
            alts = sig[i + 1 : j].split("|")
            if len(alts) < 2:
                raise SignatureError(f"{where}: alternative needs at least two choices")
            rx_alts = []
            for alt in alts:
                if not alt or len(alt) % 2 or any(ch not in _HEX for ch in alt):
                    raise SignatureError(f"{where}: bad alternative {alt!r}")
                rx_alts.append(b"".join(_hex_pair(alt[k : k + 2], where) for k in range(0, len(alt), 2)))
            out.append(b"(?:" + b"|".join(rx_alts) + b")")
            i = j + 1
        else:
            tok = sig[i : i + 2]
            if len(tok) < 2 or any(ch not in _HEX for ch in tok):
                raise SignatureError(f"{where}: bad hex at column {i + 1}: {sig[i:i + 8]!r}")
            out.append(_hex_pair(tok, where))
            if "?" not in tok:
                fixed += 1
            i += 2
    if not out:
        raise SignatureError(f"{where}: empty signature")
    return b"".join(out), fixed


def parse_offset(text: str, where: str) -> Offset:
    """``*``, ``n``, ``n,maxshift``, ``EOF-n`` (ClamAV's offset grammar, the parts we honour)."""
    text = text.strip()
    if text == "*":
        return Offset("any")
    m = re.fullmatch(r"(\d+)(?:,(\d+))?", text)
    if m:
        return Offset("abs", int(m.group(1)), int(m.group(2) or 0))
    m = re.fullmatch(r"EOF-(\d+)(?:,(\d+))?", text)
    if m:
        return Offset("eof", int(m.group(1)), int(m.group(2) or 0))
    raise SignatureError(f"{where}: unsupported offset {text!r}")


def parse_ndb_line(line: str, where: str) -> BodySig:
    """``Name:Target:Offset:HexSig[:MinFL[:MaxFL]]``."""
    parts = line.split(":")
    if len(parts) < 4 or len(parts) > 6:
        raise SignatureError(f"{where}: expected Name:Target:Offset:HexSig[:min[:max]]")
    name, target_s, offset_s, hexsig = (p.strip() for p in parts[:4])
    if not _NAME_RE.match(name):
        raise SignatureError(f"{where}: bad or empty name")
    if not (target_s.isascii() and target_s.isdigit()):
        raise SignatureError(f"{where}: bad target {target_s!r}")
    target = int(target_s)
    if target not in SUPPORTED_TARGETS:
        raise SignatureError(f"{where}: unsupported target {target} (supported: 0, 1, 6)")
    offset = parse_offset(offset_s, where)
    regex, fixed = hexsig_to_regex(hexsig, where)
    if fixed < 2:
        raise SignatureError(f"{where}: signature needs at least 2 fixed bytes")
    fl = [int(p) if p.strip().isascii() and p.strip().isdigit() else None for p in parts[4:]]
    return BodySig(name, target, offset, regex, *(fl + [None, None])[:2], origin=where)


def signature_files(bases: Path) -> list[Path]:
    """The database files of a directory, in a stable order (their content forms the cache key)."""
    if bases.is_file():
        return [bases]
    return sorted(p for p in bases.iterdir() if p.suffix in SIGNATURE_SUFFIXES and p.is_file())


_FAST_HDB = re.compile(r"([0-9a-fA-F]{32}):(\d+):([\x21-\x7e][\x20-\x7e]*?)(?::\d*)?")
_FAST_HSB = re.compile(r"([0-9a-fA-F]{40}|[0-9a-fA-F]{64}):(\d+|\*):([\x21-\x7e][\x20-\x7e]*?)(?::\d*)?")
PARSE_CACHE_VERSION = "1"


def _parse_file(path: Path, text: str) -> SignatureSet:
    """Parse one database file into a partial SignatureSet (errors collected, never raised)."""
    part = SignatureSet()
    ndb = path.suffix == ".ndb"
    fast = None if ndb else (_FAST_HSB if path.suffix == ".hsb" else _FAST_HDB)
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] == "#":
            continue
        if fast is not None:
            m = fast.fullmatch(line)
            if m is not None:  # the common case, without building intermediate objects
                hexd, size, name = m.groups()
                algo = _HASH_LEN[len(hexd)]
                part.hashes[algo][f"{hexd.lower()}:{size}"] = name
                if size == "*":
                    part.hash_anysize[algo] = True
                else:
                    part.hash_sizes[algo].add(int(size))
                continue
        where = f"{path}:{lineno}"
        try:
            if ndb:
                part.body.append(parse_ndb_line(line, where))
            else:
                part.add_hash(parse_hash_line(line, where, sha_only=path.suffix == ".hsb"))
        except SignatureError as exc:
            part.errors.append(str(exc))
    return part


def _to_json(part: SignatureSet) -> dict[str, object]:
    return {
        "hashes": part.hashes,
        "sizes": {a: sorted(v) for a, v in part.hash_sizes.items()},
        "anysize": part.hash_anysize,
        "body": [[b.name, b.target, b.offset.kind, b.offset.value, b.offset.shift, b.regex.decode("latin-1"),
                  b.min_flevel, b.max_flevel, b.origin] for b in part.body],
        "errors": part.errors,
    }


def _from_json(doc: dict) -> SignatureSet:  # type: ignore[type-arg]
    part = SignatureSet()
    part.hashes = doc["hashes"]
    part.hash_sizes = {a: set(v) for a, v in doc["sizes"].items()}
    part.hash_anysize = doc["anysize"]
    part.body = [BodySig(n, t, Offset(k, v, sh), rx.encode("latin-1"), lo, hi, o)
                 for n, t, k, v, sh, rx, lo, hi, o in doc["body"]]
    part.errors = doc["errors"]
    return part


def _merge(into: SignatureSet, part: SignatureSet) -> None:
    for algo in into.hashes:
        if part.hashes[algo]:
            if into.hashes[algo]:
                into.hashes[algo].update(part.hashes[algo])
            else:
                into.hashes[algo] = part.hashes[algo]
        into.hash_sizes[algo] |= part.hash_sizes[algo]
        into.hash_anysize[algo] = into.hash_anysize[algo] or part.hash_anysize[algo]
    into.body.extend(part.body)
    into.errors.extend(part.errors)


def load_signatures(bases: Path | str, cache_dir: Path | None = None) -> SignatureSet:
    """Read every .hdb/.hsb/.ndb under ``bases``; collect per-line errors instead of failing.

    With ``cache_dir``, the parsed form of each file is cached as JSON keyed by the file's path
    and SHA-256, so a restart or reload of unchanged files skips the text parsing.
    """
    import json

    from runtime.fsutil import atomic_write

    bases = Path(bases)
    sigs = SignatureSet()
    h = hashlib.sha256()
    if not bases.exists():
        raise FileNotFoundError(f"{bases}: anti-virus database directory does not exist")
    for path in signature_files(bases):
        raw = path.read_bytes()
        file_digest = hashlib.sha256(raw).hexdigest()
        h.update(path.name.encode() + b"\0" + bytes.fromhex(file_digest))
        sigs.files.append(path)
        cached = None
        if cache_dir is not None:
            key = hashlib.sha256(f"{PARSE_CACHE_VERSION}|{path}|{file_digest}".encode()).hexdigest()
            cached = cache_dir / f"parsed-{key}.json"
            try:
                _merge(sigs, _from_json(json.loads(cached.read_bytes())))
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pass
        part = _parse_file(path, raw.decode("utf-8", "replace"))
        _merge(sigs, part)
        if cached is not None:
            try:
                cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                atomic_write(cached, json.dumps(_to_json(part)).encode(), mode=0o600)
            except OSError:
                pass
    sigs.digest = h.hexdigest()
    return sigs
