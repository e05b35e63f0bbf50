"""Multi-pattern matcher for body signatures, compiled once per database.

Choice (measured in bench/engine/matchers.py, figures in bench/README.md): Hyperscan in block mode
prefilters all .ndb signatures in one pass; every signature is compiled unanchored with
SINGLEMATCH so a clean object costs one pass and no Python callback.  Offset constraints
(``n``, ``n,shift``, ``EOF-n``) and file-type targets are verified afterwards with the linear-time
matcher of runtime/engine/bodysig.py (never a backtracking ``re`` over ``.*``) only for the few
signatures Hyperscan reported, which keeps the compiled database small.  Logical (.ldb)
signatures are prefiltered by the literal anchors of their subsignatures (Aho-Corasick) and
evaluated only when one of them occurs.

The compiled Hyperscan database is serialised into a cache keyed by the database digest, the
Hyperscan version and this module's format version, so a restart or a reload of unchanged
signatures costs a file read instead of a compile.  The cache holds only Hyperscan's own
serialised bytes (no pickles), in a directory we own with mode 0700.

Debian packages no Python binding for Hyperscan, so the .deb uses Debian's ``libhs.so.5``
(``libhyperscan5``) through ctypes (runtime/engine/libhs.py, the same interface; decision in
docs/packaging.md).  Where that library is absent the prefilter is an Aho-Corasick automaton
(Debian's ``python3-ahocorasick``) over each signature's longest literal byte run, the way
ClamAV's own matcher anchors its patterns, and every candidate is confirmed by the same
linear-time matcher.  Slower (bench/README.md) but the same verdicts; tests run every prefilter
on the same signatures.  The compiled databases live in the database's cache entry
(runtime/engine/sigcache.py) and are built from ``SignatureSet.prefilter()``, so a warm start
loads them without parsing a signature.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import threading
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.fsutil import atomic_write

from . import targets
from .ldb import LogicalSig
from .signatures import BodySig

try:
    import hyperscan
except ImportError:  # Debian packages no binding: its libhs.so.5 through ctypes (docs/packaging.md)
    from . import libhs

    hyperscan = libhs if libhs.available() else None
try:
    import ahocorasick
except ImportError:
    ahocorasick = None

FORMAT_VERSION = "3"
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
        return "hyperscan" if getattr(hyperscan, "__name__", "").startswith("hyperscan") else \
            f"hyperscan ({hyperscan.__version__} via ctypes)"
    return "aho-corasick" if ahocorasick is not None else "re"


def prefilter_hint(machine: str | None = None) -> str | None:
    """What to tell the administrator when this process scans without Hyperscan on a machine
    Debian's ``libhyperscan5`` exists for (amd64): the fallback is several times slower per
    message (bench/README.md), and the package only *recommends* the library, so an install with
    ``--no-install-recommends`` or a bare ``dpkg -i`` leaves it out.  None when nothing is to be
    said (Hyperscan in use, or an architecture without it)."""
    if hyperscan is not None:
        return None
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return None
    return (f"scanning with the {prefilter_name()} prefilter: Hyperscan's libhs.so.5 was not found; "
            "install libhyperscan5 (apt-get install libhyperscan5) for several times faster scanning")


def matcher_version() -> str:
    """The compiled databases' dependency on the library: part of their cache keys."""
    return f"{getattr(hyperscan, '__version__', '-') if hyperscan is not None else '-'}|{FORMAT_VERSION}"


def default_cache_dir() -> Path:
    """``$KAV_ENGINE_CACHE`` or ``$XDG_CACHE_HOME/kav4ms/engine`` (``~/.cache`` by default)."""
    env = os.environ.get("KAV_ENGINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kav4ms" / "engine"


_RAW_TARGETS = frozenset({0, 1, 4, 6, 9, 10})  # matched on the object's own bytes (3 and 7: normalised)


def _norm_views(data: bytes, memo: dict[int, list[bytes]]) -> list[bytes]:
    """Every normalised view of ``data`` (ASCII for target 7, HTML for 3), computed once per scan."""
    out = []
    for target in (7, 3):
        if target not in memo:
            memo[target] = targets.views(target, data)
        out.extend(memo[target])
    return out


def _views(target: int, data: bytes, memo: dict[int, list[bytes]]) -> list[bytes]:
    if target in _RAW_TARGETS:
        return [data] if targets.type_ok(target, data) else []
    if target not in memo:
        memo[target] = targets.views(target, data)
    return memo[target]


class BodyMatcher:
    """Compiled body signatures; thread-safe through per-thread Hyperscan scratch space."""

    def __init__(self, sigs: Sequence[BodySig], digest: str, cache_dir: Path | None = None,
                 meta: list[tuple[int, bytes]] | None = None) -> None:
        """``meta``: (target, anchor) per signature (SignatureSet.prefilter), so a mapped set is
        not parsed to build the prefilters."""
        self.sigs = sigs
        if meta is None:
            meta = [(sig.target, sig.anchor) for sig in sigs]
        self.fallback: list[int] = []  # indexes no prefilter covers (checked on every object)
        self._local = threading.local()
        self.from_cache = False
        self.db: Any = None  # hyperscan.Database when hyperscan is there
        self._automaton: Any = None  # ahocorasick.Automaton otherwise
        # HTML/ASCII signatures (targets 3, 7) are prefiltered on the normalised text, not the raw bytes
        norm_words: dict[tuple[bytes, bool], list[int]] = {}
        raw_words: dict[tuple[bytes, bool], list[int]] = {}
        self._norm_always: list[int] = []
        # for streamed members: the targets of raw signatures that no literal anchor can rule out
        self.unfiltered_targets: set[int] = set()
        self.longest_raw = 0
        for i, (target, anchor) in enumerate(meta):
            if target in _RAW_TARGETS:
                if len(anchor) < MIN_ANCHOR or not _Literals.usable():
                    self.unfiltered_targets.add(target)
                else:
                    raw_words.setdefault((anchor, False), []).append(i)
                    self.longest_raw = max(self.longest_raw, len(anchor))
                continue
            if len(anchor) < MIN_ANCHOR or not _Literals.usable():
                self._norm_always.append(i)
            else:
                norm_words.setdefault((anchor, False), []).append(i)
        self._norm = _Literals(norm_words, cache_dir, "ndb-norm")
        # Hyperscan's database holds whole signatures, whose matches a window can cut: the stream
        # looks for the anchors (Aho-Corasick's automaton already is that set).
        self._raw_anchors = _Literals(raw_words if hyperscan is not None else {}, cache_dir, "stream-ndb")
        if sigs and hyperscan is not None:
            self._build(digest, cache_dir, meta)
        elif sigs:
            self._build_automaton(meta)
        self._fallback_set = frozenset(self.fallback)

    # -- building -------------------------------------------------------------------------
    def _cache_file(self, digest: str, cache_dir: Path) -> Path:
        key = hashlib.sha256(f"{digest}|{hyperscan.__version__}|{FORMAT_VERSION}".encode()).hexdigest()
        return cache_dir / f"ndb-{key}.hs"

    def _build(self, digest: str, cache_dir: Path | None, meta: list[tuple[int, bytes]]) -> None:
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
        raw = [i for i, (target, _a) in enumerate(meta) if target in _RAW_TARGETS]
        ids = [i for i in raw if self.sigs[i].hs_regex()]
        self.fallback = [i for i in raw if not self.sigs[i].hs_regex()]
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

    def _build_automaton(self, meta: list[tuple[int, bytes]]) -> None:
        """Aho-Corasick over literal anchors; signatures without one are verified on every object."""
        if ahocorasick is None:
            self.fallback = [i for i, (target, _a) in enumerate(meta) if target in _RAW_TARGETS]
            return
        anchored: dict[str, list[int]] = {}
        for i, (target, anchor) in enumerate(meta):
            if target not in _RAW_TARGETS:
                continue  # the normalised-text automaton covers it
            if len(anchor) < MIN_ANCHOR:
                self.fallback.append(i)
            else:
                # latin-1 maps bytes 0-255 one to one onto str, which every pyahocorasick build takes
                anchored.setdefault(anchor.decode("latin-1"), []).append(i)
        self._automaton = _automaton({key: tuple(ids) for key, ids in anchored.items()})

    def _compile(self, ids: list[int]) -> Any:
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(expressions=[self.sigs[i].hs_regex() for i in ids], ids=ids, elements=len(ids), flags=_FLAGS)
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

    def _confirm(self, i: int, data: bytes, deadline: float | None, memo: dict[int, list[bytes]]) -> bool:
        sig = self.sigs[i]
        hs_matched = self.db is not None and i not in self._fallback_set
        for view in _views(sig.target, data, memo):
            win = sig.offset.window(len(view))
            if win is None:
                continue
            if sig.offset.kind == "any" and hs_matched and view is data:
                return True  # Hyperscan already matched the whole signature on these bytes
            pattern = sig.get_pattern()
            if pattern is not None and pattern.search(view, win[0], win[1], deadline):
                return True
        return False

    def match(self, data: bytes, deadline: float | None = None) -> list[str]:
        """Names of every body signature found in ``data`` (in signature-file order).

        Raises DeadlineExceeded when ``deadline`` (time.monotonic()) passes during the search.
        """
        cands: list[int] = []
        if self.db is not None:
            self.db.scan(data, match_event_handler=_collect, context=cands, scratch=self._scratch())
        elif self._automaton is not None:
            seen: set[int] = set()
            for _end, ids in self._automaton.iter(data.decode("latin-1")):
                seen.update(ids)
            cands.extend(seen)
        cands.extend(self.fallback)
        memo: dict[int, list[bytes]] = {}
        if self._norm or self._norm_always:
            views = _norm_views(data, memo)
            if views:
                cands.extend(self._norm_always)
                for view in views:
                    for k in self._norm.scan(view):
                        cands.extend(self._norm.groups.get(k))
        return [self.sigs[i].name for i in sorted(set(cands)) if self._confirm(i, data, deadline, memo)]


    # -- streamed members (runtime/engine/streamscan.py) -------------------------------------
    def raw_anchor_in(self, window: bytes) -> bool:
        """Whether the anchor of some raw-target signature occurs in ``window``."""
        if self._raw_anchors:
            return self._raw_anchors.found(window)
        if self._automaton is not None:
            return next(self._automaton.iter(window.decode("latin-1")), None) is not None
        return False

    @property
    def norm_literals(self) -> _Literals:
        """The anchors of the HTML/ASCII signatures, looked for in the normalised text."""
        return self._norm

    @property
    def norm_unfiltered(self) -> bool:
        """An HTML/ASCII signature without an anchor: every text object is a candidate."""
        return bool(self._norm_always)


class LogicalMatcher:
    """Logical signatures, prefiltered by their subsignatures' literal anchors."""

    def __init__(self, lsigs: Sequence[LogicalSig], cache_dir: Path | None = None,
                 meta: list[tuple[int, bool, list[list[tuple[bytes, bool]] | None]]] | None = None) -> None:
        """``meta``: (target, zero_true, per subsignature None for a PCRE or its (anchor, nocase)
        forms) per signature (SignatureSet.prefilter)."""
        self.lsigs = lsigs
        if meta is None:
            meta = [(ls.target, ls.zero_true, [None if sub.pcre is not None else list(sub.keys) for sub in ls.subsigs])
                    for ls in lsigs]
        self.always: list[int] = []  # a subsignature without a usable anchor: evaluate on every object
        self.always_targets: set[int] = set()  # their targets (streamed members: type decides)
        self._raw = _Literals({}, None, "")
        self._normed = _Literals({}, None, "")
        if not lsigs:
            return
        if not _Literals.usable():
            self.always = list(range(len(lsigs)))
            self.always_targets = {target for target, _z, _s in meta}
            return
        words: dict[tuple[bytes, bool], list[int]] = {}  # (anchor, nocase) -> packed (signature, subsignature)
        norm_words: dict[tuple[bytes, bool], list[int]] = {}
        for li, (target, zero_true, subs) in enumerate(meta):
            normalised = target not in _RAW_TARGETS  # prefiltered on the lower-case normalised text
            unanchored = False
            for si, keys in enumerate(subs):
                if keys is None:
                    continue  # a PCRE: evaluated whenever its logical signature is, after its trigger
                for anchor, nocase in keys:
                    if len(anchor) < MIN_ANCHOR:
                        unanchored = True
                    elif normalised:
                        norm_words.setdefault((anchor.lower(), False), []).append(li << 6 | si)
                    else:
                        words.setdefault((anchor.lower() if nocase else anchor, nocase), []).append(li << 6 | si)
            if unanchored or zero_true or all(keys is None for keys in subs):
                self.always.append(li)
        self._raw = _Literals(words, cache_dir, "ldb")
        self._normed = _Literals(norm_words, cache_dir, "ldb-norm")
        self.always_targets = {meta[li][0] for li in self.always}

    @property
    def literals(self) -> tuple[_Literals, _Literals]:
        """The subsignature anchors: on the raw bytes, and on the normalised text (streamscan.py)."""
        return self._raw, self._normed

    def match(self, data: bytes, deadline: float | None = None) -> list[str]:
        hits: dict[int, set[int]] = {}
        for k in self._raw.scan(data):
            _add_pairs(self._raw.groups.get(k), hits)
        memo: dict[int, list[bytes]] = {}
        if self._normed:
            for view in _norm_views(data, memo):
                for k in self._normed.scan(view):
                    _add_pairs(self._normed.groups.get(k), hits)
        everything = set(range(64))
        for li in self.always:
            hits.setdefault(li, set()).update(everything)
        found = []
        for li in sorted(hits):
            lsig = self.lsigs[li]
            for view in _views(lsig.target, data, memo):
                if lsig.matches(view, hits[li], deadline):
                    found.append(lsig.name)
                    break
        return found


class _Groups:
    """word number -> the integers it stands for, in two flat arrays (4 bytes each, no Python objects:
    140 000 subsignatures as tuples would cost some 15 MB per process)."""

    def __init__(self, values: list[list[int]]) -> None:
        self.start = array("I", [0])
        self.flat = array("I")
        for vals in values:
            self.flat.extend(vals)
            self.start.append(len(self.flat))

    def get(self, k: int) -> array[int]:
        return self.flat[self.start[k] : self.start[k + 1]]


def _add_pairs(packed: array[int], hits: dict[int, set[int]]) -> None:
    for v in packed:  # signature << 6 | subsignature (at most 64 subsignatures)
        hits.setdefault(v >> 6, set()).add(v & 63)


class _Literals:
    """A set of literal words, each case-sensitive or not, reported by number.

    Hyperscan (the wheel or Debian's libhs.so.5) scans for all of them in one pass at memory
    speed, its compiled database cached by content beside the signatures; pyahocorasick is the
    fallback (some ten times slower: its iterator is driven from Python).
    """

    def __init__(self, words: dict[tuple[bytes, bool], list[int]], cache_dir: Path | None, tag: str) -> None:
        self.groups = _Groups(list(words.values()))
        self.count = len(words)
        self.longest = max((len(w) for w, _nc in words), default=0)  # overlap a windowed scan needs
        self._hs: Any = None
        self._auto: Any = None
        self._auto_nocase: Any = None
        self._local = threading.local()
        if not words:
            return
        keys = list(words)
        if hyperscan is not None:
            self._hs = self._build_hs(keys, cache_dir, tag)
        elif ahocorasick is not None:
            self._auto = _automaton({w.decode("latin-1"): k for k, (w, nc) in enumerate(keys) if not nc})
            self._auto_nocase = _automaton({w.lower().decode("latin-1"): k for k, (w, nc) in enumerate(keys) if nc})

    @staticmethod
    def usable() -> bool:
        return hyperscan is not None or ahocorasick is not None

    def __bool__(self) -> bool:
        return self.count > 0

    def found(self, data: bytes) -> bool:
        """Whether any of the words occurs in ``data``."""
        return self.count > 0 and bool(self.scan(data))

    @staticmethod
    def _build_hs(keys: list[tuple[bytes, bool]], cache_dir: Path | None, tag: str) -> Any:
        h = hashlib.sha256(f"{tag}|{hyperscan.__version__}|{FORMAT_VERSION}".encode())
        for w, nc in keys:
            h.update(b"%d:%d:" % (nc, len(w)) + w)
        cache = cache_dir / f"{tag}-{h.hexdigest()}.hs" if cache_dir is not None else None
        if cache is not None and cache.is_file():
            try:
                return hyperscan.loadb(cache.read_bytes(), hyperscan.HS_MODE_BLOCK)
            except (hyperscan.error, OSError, ValueError, TypeError):
                pass  # unreadable: compiled again below
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        flags = [hyperscan.HS_FLAG_SINGLEMATCH | (hyperscan.HS_FLAG_CASELESS if nc else 0) for _w, nc in keys]
        db.compile(expressions=[b"".join(b"\\x%02x" % c for c in w) for w, _nc in keys],
                   ids=list(range(len(keys))), elements=len(keys), flags=flags)
        if cache is not None:
            try:
                cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                atomic_write(cache, hyperscan.dumpb(db), mode=0o600)
            except OSError:
                pass  # a cache we cannot write only costs speed at the next start
        return db

    def scan(self, data: bytes) -> list[int]:
        """Numbers of the words found in ``data`` (each once with Hyperscan; possibly repeated otherwise)."""
        if self._hs is not None:
            scratch = getattr(self._local, "scratch", None)
            if scratch is None:
                scratch = self._local.scratch = hyperscan.Scratch(self._hs)
            ids: list[int] = []
            self._hs.scan(data, match_event_handler=_collect, context=ids, scratch=scratch)
            return ids
        found: list[int] = []
        if self._auto is not None:
            found.extend(k for _end, k in self._auto.iter(data.decode("latin-1")))
        if self._auto_nocase is not None:
            found.extend(k for _end, k in self._auto_nocase.iter(data.lower().decode("latin-1")))
        return found


#: Bytes in roughly falling order of frequency in mail, text and executables.  pyahocorasick
#: finds a trie node's child by a linear search of its children in the order they were created,
#: and the scan is back at the root after nearly every byte, where a large signature set gives
#: up to 256 children: creating the root's children for common bytes first makes most of those
#: searches end early (the bench's 10 KB message: about 3x faster per byte, same matches).
_COMMON_FIRST = (b"\x00 etaoinsrhldcumfpgwybvkxjqz\nETAOINSRHLDCUMFPGWYBVKXJQZ0123456789"
                 b"\xff\r\t/+=.,-_:;<>\"'()@")
_RANK = {b: i for i, b in enumerate(_COMMON_FIRST)}


def _first_byte_rank(word: str) -> int:
    b = ord(word[0]) if word else 0
    return _RANK.get(b, len(_COMMON_FIRST) + b)


def _automaton(words: dict[str, Any]) -> Any:
    """Aho-Corasick over ``words`` (each word's value is what ``iter`` reports for it), the words
    added with common first bytes first (see ``_COMMON_FIRST``)."""
    if not words:
        return None
    auto = ahocorasick.Automaton()
    for key in sorted(words, key=_first_byte_rank):
        auto.add_word(key, words[key])
    auto.make_automaton()
    return auto


def _collect(sig_id: int, _from: int, _to: int, _flags: int, ctx: list[int]) -> None:
    ctx.append(sig_id)

