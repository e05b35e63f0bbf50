"""Multi-pattern matcher for body signatures, compiled once per database.

Choice (measured in bench/engine/matchers.py, figures in bench/README.md): Hyperscan in block mode
prefilters all .ndb signatures in one pass; every signature is compiled unanchored with
SINGLEMATCH so a clean object costs one pass and no Python callback.  Offset constraints
(``n``, ``n,shift``, ``EOF-n``) and file-type targets are verified afterwards with Python's ``re``
only for the few signatures Hyperscan reported, which keeps the compiled database small.

The compiled Hyperscan database is serialised into a cache keyed by the database digest, the
Hyperscan version and this module's format version, so a restart or a reload of unchanged
signatures costs a file read instead of a compile.  The cache holds only Hyperscan's own
serialised bytes (no pickles), in a directory we own with mode 0700.

Debian packages no Python binding for Hyperscan, so the .deb must run without it: then the
prefilter is an Aho-Corasick automaton (Debian's ``python3-ahocorasick``) over each signature's
longest literal byte run, the way ClamAV's own matcher anchors its patterns, and every candidate
is confirmed by the same ``re`` verifier.  Slower (bench/README.md) but the same verdicts; tests
run both prefilters on the same signatures.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any

from runtime.fsutil import atomic_write

from .signatures import BodySig

try:
    import hyperscan
except ImportError:  # Debian: no binding packaged; see the module docstring
    hyperscan = None
try:
    import ahocorasick
except ImportError:
    ahocorasick = None

FORMAT_VERSION = "1"
_FLAGS = (hyperscan.HS_FLAG_DOTALL | hyperscan.HS_FLAG_SINGLEMATCH) if hyperscan is not None else 0
_TOKEN = re.compile(rb"\\x([0-9a-f]{2})|\[(?:\\x[0-9a-f]{2}|-)*\]|\(\?:[^)]*\)|\.\*|\.\{[0-9,]*\}|\.")
MIN_ANCHOR = 3  # shorter literals would make nearly every object a candidate


def literal_anchor(regex: bytes) -> bytes:
    """The longest run of fixed bytes at the top level of a translated .ndb regex.

    A match of the whole signature always contains this run, so finding it is a necessary
    condition: the prefilter may over-report (the verifier decides), never under-report.
    """
    best = b""
    run = bytearray()
    pos = 0
    while pos < len(regex):
        m = _TOKEN.match(regex, pos)
        if m is None:  # not a form hexsig_to_regex writes: no safe anchor
            return b""
        if m.group(1) is not None:
            run.append(int(m.group(1), 16))
        else:
            if len(run) > len(best):
                best = bytes(run)
            run.clear()
        pos = m.end()
    return bytes(run) if len(run) > len(best) else best


def prefilter_name() -> str:
    """Which prefilter this process uses (logged by aveserver, shown by the benchmark)."""
    if hyperscan is not None:
        return "hyperscan"
    return "aho-corasick" if ahocorasick is not None else "re"


def default_cache_dir() -> Path:
    """``$KAV_ENGINE_CACHE`` or ``$XDG_CACHE_HOME/kav4ms/engine`` (``~/.cache`` by default)."""
    env = os.environ.get("KAV_ENGINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kav4ms" / "engine"


def _type_ok(target: int, data: bytes) -> bool:
    if target == 0:
        return True
    if target == 1:
        return data[:2] == b"MZ"
    if target == 6:
        return data[:4] == b"\x7fELF"
    return False


class BodyMatcher:
    """Compiled body signatures; thread-safe through per-thread Hyperscan scratch space."""

    def __init__(self, sigs: list[BodySig], digest: str, cache_dir: Path | None = None) -> None:
        self.sigs = sigs
        self.fallback: list[int] = []  # indexes Hyperscan refused (verified by `re` on every object)
        self._verify: dict[int, re.Pattern[bytes]] = {}
        self._local = threading.local()
        self.from_cache = False
        self.db: Any = None  # hyperscan.Database when hyperscan is there
        self._automaton: Any = None  # ahocorasick.Automaton otherwise
        if sigs and hyperscan is not None:
            self._build(digest, cache_dir)
        elif sigs:
            self._build_automaton()
        self._fallback_set = frozenset(self.fallback)

    # -- building -------------------------------------------------------------------------
    def _cache_file(self, digest: str, cache_dir: Path) -> Path:
        key = hashlib.sha256(f"{digest}|{hyperscan.__version__}|{FORMAT_VERSION}".encode()).hexdigest()
        return cache_dir / f"ndb-{key}.hs"

    def _build(self, digest: str, cache_dir: Path | None) -> None:
        cache = self._cache_file(digest, cache_dir) if cache_dir and digest else None
        if cache is not None and cache.is_file():
            try:
                blob = cache.read_bytes()
                fb_len = int.from_bytes(blob[:4], "big")
                self.fallback = [int(x) for x in blob[4 : 4 + fb_len].split(b",") if x]
                self.db = hyperscan.loadb(blob[4 + fb_len :], hyperscan.HS_MODE_BLOCK)
                self.from_cache = True
                return
            except (hyperscan.error, ValueError, TypeError, OSError):
                self.fallback = []  # unreadable cache: rebuild it below
        ids = [i for i in range(len(self.sigs))]
        try:
            self.db = self._compile(ids)
        except hyperscan.error:
            good = []
            for i in ids:
                try:
                    self._compile([i])
                    good.append(i)
                except hyperscan.error:
                    self.fallback.append(i)
            self.db = self._compile(good) if good else None
        if cache is not None and self.db is not None:
            self._store(cache)

    def _build_automaton(self) -> None:
        """Aho-Corasick over literal anchors; signatures without one are verified on every object."""
        if ahocorasick is None:
            self.fallback = list(range(len(self.sigs)))
            return
        automaton = ahocorasick.Automaton()
        anchored: dict[str, list[int]] = {}
        for i, sig in enumerate(self.sigs):
            anchor = literal_anchor(sig.regex)
            if len(anchor) < MIN_ANCHOR:
                self.fallback.append(i)
            else:
                # latin-1 maps bytes 0-255 one to one onto str, which every pyahocorasick build takes
                anchored.setdefault(anchor.decode("latin-1"), []).append(i)
        for key, ids in anchored.items():
            automaton.add_word(key, tuple(ids))
        if anchored:
            automaton.make_automaton()
            self._automaton = automaton

    def _compile(self, ids: list[int]) -> Any:
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(
            expressions=[self.sigs[i].regex for i in ids], ids=ids, elements=len(ids), flags=_FLAGS
        )
        return db

    def _store(self, cache: Path) -> None:
        try:
            cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fb = ",".join(map(str, self.fallback)).encode()
            blob = len(fb).to_bytes(4, "big") + fb + hyperscan.dumpb(self.db)
            atomic_write(cache, blob, mode=0o600)
        except OSError:
            pass  # a cache we cannot write only costs speed at the next start

    # -- scanning -------------------------------------------------------------------------
    def _scratch(self) -> Any:
        s = getattr(self._local, "scratch", None)
        if s is None or getattr(self._local, "db", None) is not self.db:
            s = hyperscan.Scratch(self.db)
            self._local.scratch = s
            self._local.db = self.db
        return s

    def _verifier(self, i: int) -> re.Pattern[bytes]:
        rx = self._verify.get(i)
        if rx is None:
            rx = re.compile(self.sigs[i].regex, re.DOTALL)
            self._verify[i] = rx
        return rx

    def _confirm(self, i: int, data: bytes) -> bool:
        sig = self.sigs[i]
        if not _type_ok(sig.target, data):
            return False
        off = sig.offset
        if off.kind == "any":
            if i in self._fallback_set or self.db is None:
                return self._verifier(i).search(data) is not None
            return True  # Hyperscan already matched the whole signature
        start = off.value if off.kind == "abs" else len(data) - off.value
        if start < 0 or start > len(data):
            return False
        rx = self._verifier(i)
        return any(rx.match(data, p) for p in range(start, min(start + off.shift, len(data)) + 1))

    def match(self, data: bytes) -> list[str]:
        """Names of every body signature found in ``data`` (in signature-file order)."""
        cands: list[int] = []
        if self.db is not None:
            self.db.scan(data, match_event_handler=_collect, context=cands, scratch=self._scratch())
        elif self._automaton is not None:
            seen: set[int] = set()
            for _end, ids in self._automaton.iter(data.decode("latin-1")):
                seen.update(ids)
            cands.extend(seen)
        cands.extend(self.fallback)
        return [self.sigs[i].name for i in sorted(set(cands)) if self._confirm(i, data)]


def _collect(sig_id: int, _from: int, _to: int, _flags: int, ctx: list[int]) -> None:
    ctx.append(sig_id)

