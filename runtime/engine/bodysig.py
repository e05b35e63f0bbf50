"""ClamAV body signatures matched in linear time, without a backtracking regular expression.

A body signature (``.ndb`` HexSig, ``.ldb`` subsignature) is a chain of fixed-shape *segments*
(bytes, nibble masks, ``??``, short ``{n}`` skips, ``(aa|bbcc)`` and ``!(aa|bb)`` alternatives)
joined by *gaps* (``*``, ``{n-m}``, ``{-n}``, ``{n-}``, ``[n-m]``).  Translating the whole chain
into one ``.*``-regex lets Python's ``re`` backtrack: ``41414141*42424242*43434343`` over
``AAAA``+``BBBB``×n is quadratic and worse.  Here each segment is a regex with no repetition
other than a fixed ``.{n}``, so trying it at one position costs at most its length, and the chain
is solved left to right over *sets of allowed start positions* kept as merged intervals:

- after an unbounded gap only the earliest end of the previous segment matters (one search);
- after a bounded gap every end ``e`` of the previous segment allows ``[e+lo, e+hi]``; those
  intervals are merged as they are produced and the next segment is searched only inside them.

Each segment is therefore searched over each input byte at most once per segment, which bounds a
scan by (input length × signature length), whatever the input.  The caller's ``deadline`` (the
scan's MaxScanTime, guide 6.4) is checked while occurrences are enumerated.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

_HEX = "0123456789abcdefABCDEF"
_HEX_RUN = re.compile(r"(?:[0-9a-fA-F]{2})+")
INLINE_SKIP_MAX = 64  # a fixed ``{n}`` up to this stays inside a segment as ``.{n}``
_WORD = rb"A-Za-z0-9"


class PatternError(ValueError):
    """The hex signature cannot be parsed (message says where)."""


class Unsupported(PatternError):
    """Valid ClamAV syntax this engine does not implement (counted per kind by the loader)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class DeadlineExceeded(Exception):
    """MaxScanTime ran out while a signature was being matched."""


@dataclass(frozen=True)
class Gap:
    lo: int
    hi: int | None  # None: unbounded


@dataclass
class Segment:
    """One fixed-shape piece; its regex is compiled on first use (most signatures never need it)."""

    source: bytes
    flags: int
    length: int  # longest match
    literal: bytes  # longest run of fixed bytes (the prefilter's anchor)
    plain: bytes | None = None  # the whole segment when it is only fixed bytes (bytes.find is faster)
    _rx: re.Pattern[bytes] | None = None

    @property
    def regex(self) -> re.Pattern[bytes]:
        rx = self._rx
        if rx is None:
            rx = self._rx = re.compile(self.source, self.flags)
        return rx


@dataclass
class BodyPattern:
    """A parsed body signature; ``search``/``count`` are linear in the input."""

    segments: list[Segment]
    gaps: list[Gap]
    anchor: bytes  # the longest fixed run of any segment
    nocase: bool = False

    def search(self, data: bytes, lo: int = 0, hi: int | None = None, deadline: float | None = None) -> bool:
        """Whether the signature occurs with its first byte at a position in ``[lo, hi]``."""
        return self._solve(data, lo, len(data) if hi is None else hi, deadline, 1) > 0

    def count(self, data: bytes, limit: int, deadline: float | None = None) -> int:
        """Number of end positions of the signature (capped at ``limit``), for ldb counts."""
        return self._solve(data, 0, len(data), deadline, limit)

    def _solve(self, data: bytes, lo: int, hi: int, deadline: float | None, limit: int) -> int:
        n = len(data)
        if lo < 0:
            lo = 0
        if hi > n:
            hi = n
        allowed = [(lo, hi)] if lo <= hi else []
        last = len(self.segments) - 1
        steps = 0
        for i, seg in enumerate(self.segments):
            gap = self.gaps[i] if i < last else None
            nxt: list[tuple[int, int]] = []
            found = 0
            for a, b in allowed:
                pos = a
                end_limit = min(b + seg.length + 1, n)  # +1: a trailing lookahead sees the next byte
                plain = seg.plain
                while pos <= b:
                    if plain is not None:
                        at = data.find(plain, pos, end_limit)
                        if at < 0 or at > b:
                            break
                        e = at + len(plain)
                    else:
                        m = seg.regex.search(data, pos, end_limit)
                        if m is None or m.start() > b:
                            break
                        at, e = m.start(), m.end()
                    steps += 1
                    if deadline is not None and steps & 0x3FF == 0 and time.monotonic() > deadline:
                        raise DeadlineExceeded
                    found += 1
                    if gap is None:  # last segment: every occurrence is one match
                        if found >= limit:
                            return found
                    elif gap.hi is None:  # unbounded: the earliest end decides
                        nxt = [(e + gap.lo, n)]
                        break
                    else:
                        s, t = e + gap.lo, min(e + gap.hi, n)
                        if nxt and s <= nxt[-1][1] + 1:
                            if t > nxt[-1][1]:
                                nxt[-1] = (nxt[-1][0], t)
                        else:
                            nxt.append((s, t))
                    pos = at + 1
                if gap is not None and gap.hi is None and nxt:
                    break
            if gap is None:
                return found
            allowed = [(s, t) for s, t in nxt if s <= t and s <= n]
            if not allowed:
                return 0
        return 0


def _byte_rx(v: int) -> bytes:
    return re.escape(bytes([v]))


class _Builder:
    """Accumulates one segment's regex pieces."""

    def __init__(self, wide: bool) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.best = b""
        self.run = bytearray()
        self.wide = wide
        self.only_fixed = True

    def _end_run(self) -> None:
        if len(self.run) > len(self.best):
            self.best = bytes(self.run)
        self.run.clear()

    def fixed(self, run: bytes) -> None:
        if self.wide:
            run = b"".join(bytes((v, 0)) for v in run)
        self.parts.append(re.escape(run))
        self.run += run
        self.length += len(run)

    def cls(self, rx: bytes, width: int = 1) -> None:
        self.only_fixed = False
        self.parts.append(rx + (b"\\x00" if self.wide else b""))
        self._end_run()
        self.length += width * (2 if self.wide else 1)

    def any(self, k: int) -> None:
        self.only_fixed = False
        k *= 2 if self.wide else 1
        self.parts.append(b".{%d}" % k if k > 1 else b".")
        self._end_run()
        self.length += k

    def empty(self) -> bool:
        return not self.parts

    def finish(self, flags: int, fixed_before: bytes = b"", fixed_after: bytes = b"") -> Segment:
        self._end_run()
        rx = fixed_before + b"".join(self.parts) + fixed_after
        plain = self.best if self.only_fixed and not fixed_before and not fixed_after and not flags & re.I else None
        return Segment(rx, flags, self.length, self.best, plain)


def _nibble(tok: str) -> bytes | int:
    hi, lo = tok
    if hi == "?" and lo == "?":
        return b"."
    if hi == "?":
        low = int(lo, 16)
        return b"[" + b"".join(_byte_rx(h << 4 | low) for h in range(16)) + b"]"
    if lo == "?":
        high = int(hi, 16) << 4
        return b"[" + _byte_rx(high) + b"-" + _byte_rx(high | 0xF) + b"]"
    return int(tok, 16)


def _alternatives(body: str, where: str, negated: bool) -> tuple[bytes, int]:
    alts = body.split("|")
    if len(alts) < 2 and not negated:
        raise PatternError(f"{where}: alternative needs at least two choices")
    rx_alts = []
    widths = set()
    for alt in alts:
        if not alt or len(alt) % 2 or any(ch not in _HEX + "?" for ch in alt):
            raise Unsupported("alternative-form", f"{where}: alternative {alt[:20]!r} not in hex-pair form")
        pieces = []
        for k in range(0, len(alt), 2):
            p = _nibble(alt[k : k + 2])
            pieces.append(_byte_rx(p) if isinstance(p, int) else p)
        rx_alts.append(b"".join(pieces))
        widths.add(len(alt) // 2)
    if negated:
        if len(widths) != 1:
            raise Unsupported("alternative-form", f"{where}: negated alternatives of different lengths")
        w = widths.pop()
        return b"(?!" + b"|".join(rx_alts) + b")" + (b".{%d}" % w if w > 1 else b"."), w
    return b"(?:" + b"|".join(rx_alts) + b")", max(widths)


def parse(sig: str, where: str, nocase: bool = False, wide: bool = False, fullword: bool = False) -> BodyPattern:
    """Parse a ClamAV hex signature into segments and gaps (modifiers as in .ldb ``::iwf``)."""
    flags = re.DOTALL | (re.IGNORECASE if nocase else 0)
    segments: list[Segment] = []
    gaps: list[Gap] = []
    cur = _Builder(wide)
    mult = 2 if wide else 1

    def close(gap: Gap) -> None:
        nonlocal cur
        if cur.empty():
            if not segments:
                raise Unsupported("leading-gap", f"{where}: signature starts with a gap")
            prev = gaps[-1]  # two gaps in a row: add them up
            gaps[-1] = Gap(prev.lo + gap.lo, None if prev.hi is None or gap.hi is None else prev.hi + gap.hi)
            return
        segments.append(cur.finish(flags, _WORD_BEFORE if fullword and not segments else b""))
        gaps.append(gap)
        cur = _Builder(wide)

    i, n = 0, len(sig)
    while i < n:
        c = sig[i]
        if c == "*":
            close(Gap(0, None))
            i += 1
        elif c in "{[":
            j = sig.find("}" if c == "{" else "]", i)
            if j < 0:
                raise PatternError(f"{where}: unterminated {c!r}")
            body = sig[i + 1 : j]
            m = re.fullmatch(r"(\d*)(-?)(\d*)", body)
            if not m or (not m.group(1) and not m.group(3)):
                raise PatternError(f"{where}: bad jump {c}{body}")
            a, dash, b = m.groups()
            if not dash:
                k = int(a)
                if k <= INLINE_SKIP_MAX and not cur.empty():
                    cur.any(k)
                else:
                    close(Gap(k * mult, k * mult))
            else:
                lo_ = int(a) if a else 0
                hi_ = int(b) if b else None
                if hi_ is not None and lo_ > hi_:
                    raise PatternError(f"{where}: bad jump {c}{body} (min > max)")
                close(Gap(lo_ * mult, None if hi_ is None else hi_ * mult))
            i = j + 1
        elif c == "(" or (c == "!" and sig[i + 1 : i + 2] == "("):
            negated = c == "!"
            start = i + 2 if negated else i + 1
            j = sig.find(")", start)
            if j < 0:
                raise PatternError(f"{where}: unterminated '('")
            body = sig[start:j]
            if body in ("B", "L", "W"):
                raise Unsupported("boundary", f"{where}: ({body}) boundary markers are not implemented")
            rx, width = _alternatives(body, where, negated)
            cur.cls(rx, width)
            i = j + 1
        elif (m := _HEX_RUN.match(sig, i)) is not None:
            cur.fixed(bytes.fromhex(m.group()))
            i = m.end()
        else:
            tok = sig[i : i + 2]
            if len(tok) < 2 or any(ch not in _HEX + "?" for ch in tok):
                raise PatternError(f"{where}: bad hex at column {i + 1}: {sig[i:i + 8]!r}")
            p = _nibble(tok)
            if isinstance(p, int):
                cur.fixed(bytes((p,)))
            elif p == b".":
                cur.any(1)
            else:
                cur.cls(p)
            i += 2
    if cur.empty():
        if not segments:
            raise PatternError(f"{where}: empty signature")
        raise Unsupported("trailing-gap", f"{where}: signature ends with a gap")
    segments.append(cur.finish(flags, _WORD_BEFORE if fullword and not segments else b"",
                               _WORD_AFTER if fullword else b""))
    anchor = max((s.literal for s in segments), key=len)
    return BodyPattern(segments, gaps, anchor, nocase)


# -- load-time checks: validate and find the anchor without building the pattern ----------------
_PAIR = r"[0-9a-fA-F?]{2}"
_GRAMMAR = re.compile(
    r"(?:[0-9a-fA-F?]{2}|\*|\{(?:\d+|-\d+|\d+-|\d+-\d+)\}|\[\d+-\d+\]|\([BLW]\)"
    rf"|\((?:{_PAIR})+(?:\|(?:{_PAIR})+)+\)|!\((?:{_PAIR})+(?:\|(?:{_PAIR})+)*\))+"
)
_TOKENS = re.compile(r"((?:[0-9a-fA-F]{2})+)|\?\?|[0-9a-fA-F]\?|\?[0-9a-fA-F]|\*|\{[^}]*\}|\[[^\]]*\]|!?\([^)]*\)")
_JUMP = re.compile(r"\{(\d+)-(\d+)\}")


@dataclass(frozen=True)
class Quick:
    """What the loader needs of a hex signature: its anchor and fixed-byte count."""

    anchor: bytes
    fixed: int


def check(sig: str, where: str, nocase: bool = False, wide: bool = False) -> Quick:
    """Validate ``sig`` as :func:`parse` would and return its anchor, in a few regex passes.

    The pattern itself is built by :func:`parse` only when a prefilter reports the signature.
    """
    if not _GRAMMAR.fullmatch(sig):
        raise PatternError(f"{where}: bad hex signature {sig[:60]!r}")
    for a, b in _JUMP.findall(sig):
        if int(a) > int(b):
            raise PatternError(f"{where}: bad jump {{{a}-{b}}} (min > max)")
    if "(B)" in sig or "(L)" in sig or "(W)" in sig:
        raise Unsupported("boundary", f"{where}: (B)/(L) boundary markers are not implemented")
    if sig[0] in "*{[" or sig[-1] in "*}]":
        raise Unsupported("leading-gap" if sig[0] in "*{[" else "trailing-gap", f"{where}: signature starts or ends "
                          "with a gap")
    # the grammar matched, so tokens follow each other from position 0: runs stay pair-aligned
    pieces = [bytes.fromhex(r) for r in _TOKENS.findall(sig) if r]
    best = max(pieces, key=len, default=b"")
    fixed = sum(len(p) for p in pieces)
    if wide:
        best = b"".join(bytes((v, 0)) for v in best)
    if nocase:
        best = best.lower()
    return Quick(best, fixed)


_WORD_BEFORE = b"(?<![" + _WORD + b"])"
_WORD_AFTER = b"(?![" + _WORD + b"])"
