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
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import hyperscan

from .signatures import BodySig

FORMAT_VERSION = "1"
_FLAGS = hyperscan.HS_FLAG_DOTALL | hyperscan.HS_FLAG_SINGLEMATCH


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
        self.db: hyperscan.Database | None = None
        if sigs:
            self._build(digest, cache_dir)
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

    def _compile(self, ids: list[int]) -> hyperscan.Database:
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
            fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, cache)
        except OSError:
            pass  # a cache we cannot write only costs speed at the next start

    # -- scanning -------------------------------------------------------------------------
    def _scratch(self) -> hyperscan.Scratch:
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
            return i not in self._fallback_set or self._verifier(i).search(data) is not None
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
        cands.extend(self.fallback)
        return [self.sigs[i].name for i in sorted(set(cands)) if self._confirm(i, data)]


def _collect(sig_id: int, _from: int, _to: int, _flags: int, ctx: list[int]) -> None:
    ctx.append(sig_id)


def names_of(found: Iterable[str]) -> list[str]:
    """Deduplicate names keeping the first-seen order."""
    return list(dict.fromkeys(found))
