"""Signature databases in ClamAV's formats: CVD/CLD containers and the plain files in them.

The product's databases live in ``[path] BasesPath`` (guide 4.2, 5.1).  We read ClamAV's open
database (``main.cvd``, ``daily.cld``, third-party plain files) side by side, as clamd does:

- hashes: ``.hdb``/``.hsb`` (whole object), ``.mdb``/``.msb`` (PE sections), MD5/SHA1/SHA256 by
  digest length, ``*`` for any size;
- bodies: ``.ndb`` (runtime/engine/bodysig.py), logical ``.ldb`` (runtime/engine/ldb.py);
- allow-lists ``.fp``/``.sfp`` (an object whose hash is listed is clean whatever matched) and
  ``.ign``/``.ign2`` (signatures dropped by name), applied across every database loaded;
- ``.info``/``.cfg`` members carry no signature and are passed over;
- everything else ClamAV ships (bytecode, phishing, icons, certificates, YARA, ...) and every
  valid line this engine cannot honour is *counted per kind* (``SignatureSet.unsupported``) for
  the one-line load summary and ``aveserver --list-bases``: nothing is skipped silently.

Malformed lines are reported as ``FILE:LINE: message`` and skipped; a container that fails its
MD5 or signature check is refused as a whole (``SignatureSet.refused``).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bodysig, sigcache, targets
from .bodysig import BodyPattern, PatternError, Unsupported
from .cvd import CONTAINER_SUFFIXES, ContainerError, iter_members, parse_header, verify_container
from .dsig import CLAMAV_KEY, PublicKey
from .hashdb import HashBuilder, HashTable
from .ldb import LogicalSig, Offset, parse_ldb_line
from .ldb import parse_offset as _parse_offset

HASH_SUFFIXES = (".hdb", ".hsb", ".mdb", ".msb")
SIGNATURE_SUFFIXES = HASH_SUFFIXES + (".ndb", ".ldb", ".fp", ".sfp", ".ign", ".ign2")
PASSIVE_SUFFIXES = (".info", ".cfg")  # read with the container, no signatures in them
# ClamAV formats this engine does not implement: counted per kind, one per signature line.
UNSUPPORTED_SUFFIXES = {
    ".cbc": "bytecode", ".pdb": "phishing", ".wdb": "phishing", ".gdb": "phishing", ".idb": "icons",
    ".crb": "certificates", ".cdb": "container-metadata", ".ftm": "filetypes", ".yar": "yara", ".yara": "yara",
    ".imp": "import-hash", ".pwdb": "archive-passwords", ".hdu": "pua", ".hsu": "pua", ".mdu": "pua",
    ".msu": "pua", ".ndu": "pua", ".ldu": "pua", ".zmd": "archive-metadata", ".rmd": "archive-metadata",
    ".db": "legacy", ".cat": "catalogs", ".ioc": "ioc",
}
SUPPORTED_TARGETS = targets.SUPPORTED


class SignatureError(PatternError):
    """One bad signature line (the message is ``FILE:LINE: reason``)."""


@dataclass(frozen=True, slots=True)
class HashSig:
    """A whole-object hash signature; ``size`` None means any size (``*`` in .hsb)."""

    algo: str  # "md5", "sha1" or "sha256"
    digest: bytes
    size: int | None
    name: str


@dataclass(slots=True)
class BodySig:
    """An extended (.ndb) body signature: the linear-time pattern, and one regex for Hyperscan."""

    name: str
    target: int
    offset: Offset
    regex: bytes | None  # hyperscan-compatible, applied with DOTALL (the prefilter only); None: not built yet
    min_flevel: int | None = None
    max_flevel: int | None = None
    origin: str = ""
    hexsig: str = ""
    pattern: BodyPattern | None = None  # built on first use (most signatures are never confirmed)
    anchor: bytes = b""  # longest fixed run: the Aho-Corasick prefilter's key

    def hs_regex(self) -> bytes:
        """The whole signature as one regex for Hyperscan (b"" for forms only bodysig knows)."""
        if self.regex is None:
            try:
                self.regex = hexsig_to_regex(self.hexsig, self.origin)[0]
            except PatternError:
                self.regex = b""
        return self.regex

    def get_pattern(self) -> BodyPattern | None:
        if self.pattern is None:
            try:
                self.pattern = bodysig.parse(self.hexsig, self.origin)
            except PatternError:
                return None  # load-time checks passed but the builder refused: never matches
        return self.pattern


@dataclass
class SignatureSet:
    """Everything loaded from one BasesPath, plus the diagnostics and a content digest.

    Hash records go into ``builder`` while parsing and are then served from ``table``, a
    memory-mapped binary file (runtime/engine/hashdb.py) shared by the pre-forked workers.
    Loaded through the compiled cache (runtime/engine/sigcache.py), ``body`` and ``logical`` are
    mapped ``Records`` parsed on access, and ``prefilter()`` gives the matchers what they need
    without parsing every signature.
    """

    body: Sequence[BodySig] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    digest: str = ""
    builder: HashBuilder | None = field(default_factory=HashBuilder)
    table: HashTable = field(default_factory=HashTable)
    logical: Sequence[LogicalSig] = field(default_factory=list)
    fp: dict[str, set[str]] = field(default_factory=lambda: {"md5": set(), "sha1": set(), "sha256": set()})
    ignored: set[str] = field(default_factory=set)
    unsupported: Counter[str] = field(default_factory=Counter)
    containers: list[str] = field(default_factory=list)  # "main.cvd version 62 (signed)"
    refused: list[str] = field(default_factory=list)  # container errors, each naming the file
    dropped: int = 0  # signatures removed by .ign/.ign2
    body_src: list[tuple[str, str]] = field(default_factory=list)  # (FILE:LINE, line) of each body/logical sig,
    logical_src: list[tuple[str, str]] = field(default_factory=list)  # kept while building the cache entry
    entry: Path | None = None  # the cache entry this set was mapped from
    _body_digest: str | None = None

    def add_hash(self, sig: HashSig, kind: str = "file") -> None:
        assert self.builder is not None, "hashes are added while loading"
        self.builder.add(kind, sig.digest, sig.size, sig.name.encode())

    def finish(self, table_dir: Path | None = None) -> None:
        """Write the hash table to a private temporary file and map it (no cache: tests, --list-*)."""
        builder, self.builder = self.builder, None
        if builder is None or not builder.counts:
            return
        with tempfile.TemporaryDirectory(prefix="kav-hashes-", dir=table_dir) as tmp:
            path = Path(tmp) / "hashes.bin"
            builder.write(path)
            self.table = HashTable(path)

    def body_digest(self) -> str:
        """What the compiled body matcher depends on (its cache key): the .ndb signatures' text."""
        if self._body_digest is not None:
            return self._body_digest
        h = hashlib.sha256()
        for b in self.body:
            h.update(f"{b.target}|{b.offset}|{b.hexsig}\n".encode())
        return h.hexdigest() if self.body else ""

    def hash_name(self, kind: str, hexdigest: str, size: int) -> str | None:
        name = self.table.lookup(kind, hexdigest, size)
        return None if name is None or name in self.ignored else name

    @property
    def count(self) -> int:
        """Number of records, as shown in X-Anti-Virus headers (guide 6.8.4)."""
        hashes = self.table.count() if self.builder is None else sum(self.builder.counts.values())
        return hashes + len(self.body) + len(self.logical)

    def names(self) -> list[str]:
        """Every detectable name, sorted and once (``aveserver --list-viruses``, guide 1.1)."""
        found = set(self.table.names()) - self.ignored
        for seq, sep in ((self.body, ":"), (self.logical, ";")):
            if isinstance(seq, sigcache.Records):
                found.update(seq.names(sep))
            else:
                found.update(s.name for s in seq)
        return sorted(found)

    def prefilter(self) -> dict[str, list[Any]]:
        """What the matchers are built from, without the signatures themselves.

        ``ndb``: ``(target, anchor)`` per body signature; ``ldb``: ``(target, zero_true, subs)``
        per logical signature, ``subs`` holding per subsignature None (PCRE) or its
        ``(anchor, nocase)`` forms.  Read from the cache entry when the set came from one.
        """
        if self.entry is not None:
            raw = json.loads((self.entry / "prefilter.json").read_text())
            return {"ndb": [(t, a.encode("latin-1")) for t, a in raw["ndb"]],
                    "ldb": [(t, bool(z), [None if sub is None else [(a.encode("latin-1"), bool(nc)) for a, nc in sub]
                                          for sub in subs]) for t, z, subs in raw["ldb"]]}
        return {"ndb": [(b.target, b.anchor) for b in self.body],
                "ldb": [(ls.target, ls.zero_true, [None if sub.pcre is not None else list(sub.keys)
                                                   for sub in ls.subsigs]) for ls in self.logical]}

    def summary(self) -> str:
        """The one load-summary line: what is served, and every unsupported kind with its count."""
        hashes = self.table.count("file")
        sects = self.table.count("section")
        fps = sum(len(v) for v in self.fp.values())
        unsup = ", ".join(f"{k} {n}" for k, n in sorted(self.unsupported.items())) or "none"
        return (f"{self.count} records ({hashes} hashes, {sects} section hashes, {len(self.body)} body, "
                f"{len(self.logical)} logical), {fps} allow-listed, {self.dropped} body/logical dropped by .ign/.ign2 "
                f"({len(self.ignored)} names, also skipped among hashes), "
                f"{len(self.errors)} bad lines; unsupported: {unsup}")

    def apply_ignores(self) -> None:
        """Drop signatures named in .ign/.ign2 of any database (clamd applies them across all)."""
        if not self.ignored:
            return
        ign = self.ignored
        before = len(self.body) + len(self.logical)
        if self.body_src:
            self.body_src = [src for b, src in zip(self.body, self.body_src, strict=True) if b.name not in ign]
        if self.logical_src:
            self.logical_src = [src for ls, src in zip(self.logical, self.logical_src, strict=True)
                                if ls.name not in ign]
        self.body = [b for b in self.body if b.name not in ign]
        self.logical = [lsig for lsig in self.logical if lsig.name not in ign]
        self.dropped = before - len(self.body) - len(self.logical)
        # hash records stay in the table (counting them would cost a pass over millions of lines);
        # hash_name() skips an ignored name at lookup


_HASH_LEN = {32: "md5", 40: "sha1", 64: "sha256"}
_NAME_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]*$")


def parse_hash_line(line: str, where: str, sha_only: bool = False, section: bool = False,
                    md5_only: bool = False) -> HashSig:
    """``HASH:SIZE:NAME[:FLEVEL]`` (.hdb/.hsb/.fp/.sfp) or ``SIZE:HASH:NAME`` (.mdb/.msb).

    The digest length decides the algorithm; ``*`` means any size (ClamAV wants ``:73`` with it).
    """
    parts = line.split(":")
    if len(parts) < 3 or len(parts) > 5:
        raise SignatureError(f"{where}: expected " + ("SIZE:HASH:NAME" if section else "HASH:SIZE:NAME"))
    if section:
        parts[0], parts[1] = parts[1], parts[0]
    digest_hex, size_s, name = parts[0].strip().lower(), parts[1].strip(), parts[2].strip()
    algo = _HASH_LEN.get(len(digest_hex))
    if algo is None or not re.fullmatch(r"[0-9a-f]+", digest_hex):
        raise SignatureError(f"{where}: bad hash {digest_hex[:70]!r}")
    if sha_only and algo == "md5":
        raise SignatureError(f"{where}: .hsb/.msb expect SHA1 or SHA256, got an MD5")
    if md5_only and algo != "md5":
        raise SignatureError(f"{where}: .hdb/.mdb expect MD5 (use .hsb/.msb for SHA); ClamAV would never match it")
    if size_s == "*":
        flevel = parts[3].strip() if len(parts) > 3 else ""
        if md5_only and not (flevel.isascii() and flevel.isdigit() and int(flevel) >= 73):
            raise SignatureError(f"{where}: size '*' needs a minimum functionality level of 73 (HASH:*:NAME:73)")
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


parse_offset = _parse_offset
FLEVEL = 216  # see runtime/engine/ldb.py


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
        raise Unsupported(f"target-{target}", f"{where}: target type {target} is not implemented")
    fl = [int(p) if p.strip().isascii() and p.strip().isdigit() else None for p in parts[4:]]
    lo_fl, hi_fl = (fl + [None, None])[:2]
    if (lo_fl is not None and lo_fl > FLEVEL) or (hi_fl is not None and hi_fl < FLEVEL):
        raise Unsupported("flevel", f"{where}: made for functionality level {lo_fl}-{hi_fl}")
    offset = _parse_offset(offset_s, where)
    quick = bodysig.check(hexsig, where)
    if quick.fixed < 2:
        raise SignatureError(f"{where}: signature needs at least 2 fixed bytes")
    return BodySig(name, target, offset, None, lo_fl, hi_fl, where, hexsig, None, quick.anchor)


def signature_files(bases: Path) -> list[Path]:
    """The database files of a directory, in a stable order (their content forms the cache key).

    Containers and plain files are listed; when both ``X.cvd`` and ``X.cld`` exist, only the one
    with the higher header version is kept (as clamd does).
    """
    if bases.is_file():
        return [bases]
    known = SIGNATURE_SUFFIXES + CONTAINER_SUFFIXES + tuple(UNSUPPORTED_SUFFIXES)
    files = sorted(p for p in bases.iterdir() if p.suffix in known and p.is_file())
    by_stem: dict[str, Path] = {}
    for p in files:
        if p.suffix not in CONTAINER_SUFFIXES:
            continue
        other = by_stem.get(p.stem)
        if other is None or _version(p) > _version(other):
            by_stem[p.stem] = p
    return [p for p in files if p.suffix not in CONTAINER_SUFFIXES or by_stem[p.stem] == p]


def _version(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return parse_header(fh.read(512), str(path)).version
    except (OSError, ContainerError):
        return -1


_NAME_B = rb"[\x21-\x39\x3b-\x7e][\x20-\x39\x3b-\x7e]*(?::\d+)?"
# The canonical line of each hash file, checked over a whole file in one pass (see hashdb.py).
_CANONICAL = {
    ".hdb": rb"[0-9a-f]{32}:\d+:" + _NAME_B,
    ".hsb": rb"(?:[0-9a-f]{40}|[0-9a-f]{64}):(?:\d+|\*):" + _NAME_B,
    ".mdb": rb"(?:\d+|\*):[0-9a-f]{32}:" + _NAME_B,
    ".msb": rb"(?:\d+|\*):(?:[0-9a-f]{40}|[0-9a-f]{64}):" + _NAME_B,
}
_NONCANONICAL = {k: re.compile(rb"^(?!(?:" + v + rb"|#.*|\s*)$).+$", re.M) for k, v in _CANONICAL.items()}
_WHOLE_CANONICAL = {k: re.compile(rb"(?:(?:" + v + rb"|#[^\n]*|)\n)*+(?:" + v + rb"|#[^\n]*|)")
                    for k, v in _CANONICAL.items()}


def _bulk_hashes(name: str, suffix: str, data: bytes, into: SignatureSet) -> None:
    """Hash files: canonical lines go to the table untouched, the rest through parse_hash_line."""
    assert into.builder is not None
    if b"\r" in data:
        data = data.replace(b"\r", b"")
    kind = "section" if suffix in (".mdb", ".msb") else "file"
    lines = data.split(b"\n")
    if _WHOLE_CANONICAL[suffix].fullmatch(data):  # the common case: one pass in C, nothing odd
        into.builder.add_lines(kind, [ln for ln in lines if ln and ln[0] != 0x23])
        return
    odd = {m.group() for m in _NONCANONICAL[suffix].finditer(data)}
    into.builder.add_lines(kind, [ln for ln in lines if ln and ln[0] != 0x23 and ln not in odd and ln.strip()])
    for lineno, raw in enumerate(lines, 1):
        if raw not in odd:
            continue
        line = raw.decode("utf-8", "replace").strip()
        try:
            sig = parse_hash_line(line, f"{name}:{lineno}", sha_only=suffix in (".hsb", ".msb"),
                                  section=kind == "section", md5_only=suffix in (".hdb", ".mdb"))
        except PatternError as exc:
            into.errors.append(str(exc))
            continue
        into.builder.add(kind, sig.digest, sig.size, sig.name.encode())


def _parse_text(name: str, data: bytes, into: SignatureSet) -> None:
    """Parse one database file (plain or a container member) into ``into``; errors are collected."""
    suffix = Path(name).suffix
    if suffix in UNSUPPORTED_SUFFIXES:
        n = sum(1 for ln in data.splitlines() if ln.strip() and not ln.startswith(b"#"))
        if n:
            into.unsupported[UNSUPPORTED_SUFFIXES[suffix]] += n
        return
    if suffix not in SIGNATURE_SUFFIXES:
        return  # .info, .cfg, COPYING: nothing to load
    if suffix in _CANONICAL:
        if into.builder is not None:  # None: the cached table already holds them
            _bulk_hashes(name, suffix, data, into)
        return
    text = data.decode("utf-8", "replace")
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] == "#":
            continue
        where = f"{name}:{lineno}"
        try:
            if suffix == ".ndb":
                into.body.append(parse_ndb_line(line, where))  # type: ignore[attr-defined]
                into.body_src.append((where, line))
            elif suffix == ".ldb":
                into.logical.append(parse_ldb_line(line, where))  # type: ignore[attr-defined]
                into.logical_src.append((where, line))
            elif suffix in (".fp", ".sfp"):
                sig = parse_hash_line(line, where)
                into.fp[sig.algo].add(f"{sig.digest.hex()}:{'*' if sig.size is None else sig.size}")
            elif suffix == ".ign2":
                into.ignored.add(line.split(":", 1)[0].strip())
            elif suffix == ".ign":  # db:line:name (older form)
                into.ignored.add(line.split(":")[2].strip() if line.count(":") >= 2 else line)
        except Unsupported as exc:
            kind = suffix.lstrip(".")
            into.unsupported[f"{kind}:{exc.kind}"] += 1
        except PatternError as exc:
            into.errors.append(str(exc))


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def load_signatures(bases: Path | str, cache_dir: Path | None = None, key: PublicKey = CLAMAV_KEY,
                    build: bool = True) -> SignatureSet:
    """Read every database under ``bases`` (containers verified with ``key``); collect per-line errors.

    Containers are verified (MD5 and digital signature) at every load.  With ``cache_dir`` the
    set is served from the compiled cache entry of its content (runtime/engine/sigcache.py): a
    warm start maps it without unpacking or parsing anything; a cold one parses, writes the entry
    and then maps it like a warm one, so both serve the same, compact form.  With ``build``
    False a missing entry is not built: the set comes back verified but empty, ``entry`` None
    (Engine.load then builds it in a child process).
    """
    bases = Path(bases)
    sigs = SignatureSet()
    if not bases.exists():
        raise FileNotFoundError(f"{bases}: anti-virus database directory does not exist")
    files = signature_files(bases)
    accepted: list[tuple[Path, tuple[int, int, int] | None]] = []  # (path, stamp of a verified container)
    parts = []
    for path in files:
        if path.suffix in CONTAINER_SUFFIXES:
            try:
                stamp = _stamp(path)
                hd, signed = verify_container(path, key)
            except (ContainerError, OSError) as exc:
                sigs.refused.append(str(exc))
                continue
            sigs.containers.append(f"{path.name} version {hd.version} built {hd.time} "
                                   f"({'signed, verified' if signed else 'local .cld, unsigned'})")
            parts.append(f"{path.name}|md5:{hd.md5}" if signed else f"{path.name}|sha256:{sigcache.file_digest(path)}")
            accepted.append((path, stamp))
        else:
            parts.append(f"{path.name}|sha256:{sigcache.file_digest(path)}")
            accepted.append((path, None))
        sigs.files.append(path)
    sigs.digest = sigcache.content_key(parts)  # of the content: the cache entry's name, and VERSION's
    if cache_dir is not None:
        entry = sigcache.open_entry(cache_dir, sigs.digest, parse_ndb_line, parse_ldb_line)
        if entry is not None:
            _from_entry(sigs, entry)
            return sigs
        if not build:
            return sigs
    changed = False
    for path, stamp in accepted:
        if stamp is None:
            _parse_text(str(path), path.read_bytes(), sigs)
            continue
        try:
            for member, data in iter_members(path):
                _parse_text(f"{path}/{member}", data, sigs)
        except ContainerError as exc:
            sigs.refused.append(str(exc))
        changed = changed or _stamp(path) != stamp  # replaced since it was verified: do not cache it
    sigs.apply_ignores()
    if cache_dir is None or changed or sigs.refused:
        sigs.finish(None)
        sigs.body_src, sigs.logical_src = [], []
        return sigs
    return _write_entry(sigs, cache_dir)


def _write_entry(sigs: SignatureSet, cache_dir: Path) -> SignatureSet:
    """Write the parsed set as a cache entry and return the set mapped from it."""
    builder, sigs.builder = sigs.builder, None
    pre = sigs.prefilter()
    prefilter = {"ndb": [(t, a.decode("latin-1")) for t, a in pre["ndb"]],
                 "ldb": [(t, int(z), [None if sub is None else [(a.decode("latin-1"), int(nc)) for a, nc in sub]
                                      for sub in subs]) for t, z, subs in pre["ldb"]]}
    meta = {"format": sigcache.FORMAT, "errors": sigs.errors, "unsupported": dict(sigs.unsupported),
            "ignored": sorted(sigs.ignored), "fp": {k: sorted(v) for k, v in sigs.fp.items()}, "dropped": sigs.dropped,
            "body_digest": sigs.body_digest()}
    assert builder is not None
    path = sigcache.write_entry(cache_dir, sigs.digest, sigs.body_src, sigs.logical_src,
                                {"meta.json": meta, "prefilter.json": prefilter}, builder.write)
    del builder, pre, prefilter
    sigcache.prune(cache_dir, path)
    entry = sigcache.open_entry(cache_dir, sigs.digest, parse_ndb_line, parse_ldb_line)
    if entry is None:
        raise OSError(f"{path}: cache entry unreadable right after it was written")
    mapped = SignatureSet(files=sigs.files, containers=sigs.containers, refused=sigs.refused, digest=sigs.digest)
    _from_entry(mapped, entry)
    return mapped


def _from_entry(sigs: SignatureSet, entry: sigcache.Entry) -> None:
    meta = entry.meta
    sigs.builder = None
    sigs.table = HashTable(entry.path / "hashes.bin")
    sigs.body, sigs.logical = entry.ndb, entry.ldb
    sigs.errors = list(meta["errors"])
    sigs.unsupported = Counter(meta["unsupported"])
    sigs.ignored = set(meta["ignored"])
    sigs.fp = {k: set(v) for k, v in meta["fp"].items()}
    sigs.dropped = meta["dropped"]
    sigs._body_digest = meta["body_digest"]
    sigs.entry = entry.path
