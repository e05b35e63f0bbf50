"""ClamAV logical signatures (``.ldb``): target description, logical expression, subsignatures.

``Name;TargetDescriptionBlock;LogicalExpression;Subsig0;Subsig1;...``

- Target description: ``Engine:a-b`` (functionality level), ``Target:n``, ``FileSize:a-b`` are
  honoured; any other keyword (EntryPoint, NumberOfSections, Container, Intermediates, IconGroup,
  HandlerType) makes the signature *unsupported* — counted by the loader, never silently dropped.
- Expression: subsignature indexes combined with ``&``, ``|`` and parentheses; ``A=X``, ``A>X``,
  ``A<X`` compare the number of matches of the sub-expression ``A`` (sum over its subsignatures),
  and ``,Y`` additionally requires at least ``Y`` distinct subsignatures of ``A`` to match.
- Subsignatures: ``[Offset:]HexSig[::modifiers]`` with the body syntax of runtime/engine/bodysig.py
  and the modifiers ``i`` (ASCII case-insensitive), ``w`` (UTF-16LE "wide"), ``a`` (with ``w``:
  ASCII too), ``f`` (whole word); and PCRE subsignatures ``[Offset:]Trigger/regex/flags``, run
  through the ``regex`` module (PCRE-like syntax, and a timeout, so MaxScanTime holds even inside
  a pathological expression) when it compiles the pattern and every flag is one we map; the rest
  (byte-compare, macros, fuzzy images, unknown flags) is unsupported.

A count is the number of distinct end positions of a subsignature (capped); ClamAV counts matches
of its own automaton, which agrees for the fixed-shape subsignatures signature writers count.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from . import bodysig
from .bodysig import BodyPattern, PatternError, Unsupported

try:
    import regex as pcre_engine
except ImportError:  # without it every PCRE subsignature is counted unsupported
    pcre_engine = None

FLEVEL = 216  # the functionality level we answer ``Engine:`` ranges with (ClamAV 1.4's)
COUNT_CAP = 10_000
MAX_SUBSIGS = 64
_TDB_SUPPORTED = {"Engine", "Target", "FileSize"}
_PCRE_FLAGS = {"i", "s", "m", "x", "g", "r", "A", "E"}


@dataclass(frozen=True)
class Offset:
    """Where a match must start: anywhere, at ``value`` (+shift), or ``value`` (+shift) before EOF."""

    kind: str  # "any", "abs", "eof"
    value: int = 0
    shift: int = 0

    def window(self, size: int) -> tuple[int, int] | None:
        if self.kind == "any":
            return 0, size
        start = self.value if self.kind == "abs" else size - self.value
        if start < 0 or start > size:
            return None
        return start, min(start + self.shift, size)


ANY = Offset("any")


def parse_offset(text: str, where: str) -> Offset:
    """``*``, ``n``, ``n,maxshift``, ``EOF-n[,maxshift]``; PE-relative offsets are unsupported."""
    text = text.strip()
    if text == "*":
        return ANY
    m = re.fullmatch(r"(\d+)(?:,(\d+))?", text)
    if m:
        return Offset("abs", int(m.group(1)), int(m.group(2) or 0))
    m = re.fullmatch(r"EOF-(\d+)(?:,(\d+))?", text)
    if m:
        return Offset("eof", int(m.group(1)), int(m.group(2) or 0))
    if re.fullmatch(r"(EP[+-]\d+|S\d+[+-]\d+|SE\d+|SL[+-]\d+)(,\d+)?", text):
        raise Unsupported("offset-pe", f"{where}: PE-relative offset {text!r} is not implemented")
    if text.startswith("VI") or text.startswith("$"):
        raise Unsupported("offset-other", f"{where}: offset {text!r} is not implemented")
    raise PatternError(f"{where}: bad offset {text!r}")


# -- expressions ---------------------------------------------------------------------------------
@dataclass
class Node:
    op: str  # "sub", "&", "|", "cmp"
    index: int = 0
    kids: list[Node] = field(default_factory=list)
    cmp: str = ""
    value: int = 0
    distinct: int = 0

    def indexes(self) -> set[int]:
        if self.op == "sub":
            return {self.index}
        return set().union(*(k.indexes() for k in self.kids))


def evaluate(node: Node, counts: list[int]) -> tuple[bool, int, set[int]]:
    """(true?, number of matches, distinct subsignatures matched) of a sub-expression."""
    if node.op == "sub":
        c = counts[node.index]
        return c > 0, c, ({node.index} if c else set())
    if node.op == "cmp":
        _ok, c, seen = evaluate(node.kids[0], counts)
        ok = {"=": c == node.value, ">": c > node.value, "<": c < node.value}[node.cmp]
        ok = ok and len(seen) >= node.distinct
        return ok, (c if ok else 0), (seen if ok else set())
    results = [evaluate(k, counts) for k in node.kids]
    total = sum(r[1] for r in results)
    seen = set().union(*(r[2] for r in results))
    ok = all(r[0] for r in results) if node.op == "&" else any(r[0] for r in results)
    return ok, total, seen


class _ExprParser:
    _TOKEN = re.compile(r"\s*(\d+|[()&|=<>,])")

    def __init__(self, text: str, where: str) -> None:
        self.toks: list[str] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = self._TOKEN.match(text, pos)
            if m is None:
                raise PatternError(f"{where}: bad logical expression at {text[pos:pos + 10]!r}")
            self.toks.append(m.group(1))
            pos = m.end()
        self.i = 0
        self.where = where

    def peek(self) -> str:
        return self.toks[self.i] if self.i < len(self.toks) else ""

    def take(self) -> str:
        tok = self.peek()
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr(0)
        if self.peek():
            raise PatternError(f"{self.where}: unexpected {self.peek()!r} in logical expression")
        return node

    def expr(self, depth: int) -> Node:
        if depth > 64:
            raise PatternError(f"{self.where}: logical expression nested too deeply")
        node = self.term(depth)
        while self.peek() in ("&", "|"):
            op = self.take()
            rhs = self.term(depth)
            if node.op == op:
                node.kids.append(rhs)
            else:
                node = Node(op, kids=[node, rhs])
        return node

    def term(self, depth: int) -> Node:
        tok = self.take()
        if tok == "(":
            node = self.expr(depth + 1)
            if self.take() != ")":
                raise PatternError(f"{self.where}: missing ')' in logical expression")
        elif _digits(tok):
            node = Node("sub", index=int(tok))
        else:
            raise PatternError(f"{self.where}: expected a subsignature index, got {tok!r}")
        while self.peek() in ("=", "<", ">"):
            cmp = self.take()
            num = self.take()
            if not _digits(num):
                raise PatternError(f"{self.where}: '{cmp}' needs a number")
            distinct = 0
            if self.peek() == ",":
                self.take()
                d = self.take()
                if not _digits(d):
                    raise PatternError(f"{self.where}: ',' needs a number")
                distinct = int(d)
            node = Node("cmp", kids=[node], cmp=cmp, value=int(num), distinct=distinct)
        return node


def parse_expression(text: str, where: str) -> Node:
    return _ExprParser(text, where).parse()


# -- subsignatures -------------------------------------------------------------------------------
@dataclass
class SubSig:
    offset: Offset
    hexsig: str = ""
    variants: tuple[tuple[bool, bool, bool], ...] = ()  # (nocase, wide, fullword) per form (w+a gives two)
    keys: tuple[tuple[bytes, bool], ...] = ()  # (anchor, nocase) per form: the prefilter's words
    origin: str = ""
    pcre: object = None  # compiled regex.Pattern
    trigger: Node | None = None
    pcre_global: bool = False
    pcre_anchored: bool = False
    _patterns: list[BodyPattern] | None = None

    @property
    def patterns(self) -> list[BodyPattern]:
        """The linear-time patterns, built on first use (load only checks them)."""
        if self._patterns is None:
            built = []
            for nocase, wide, full in self.variants:
                try:
                    built.append(bodysig.parse(self.hexsig, self.origin, nocase=nocase, wide=wide, fullword=full))
                except PatternError:
                    pass  # the load-time check passed but the builder refused: that form never matches
            self._patterns = built
        return self._patterns

    def count(self, data: bytes, counts: list[int], deadline: float | None) -> int:
        win = self.offset.window(len(data))
        if win is None:
            return 0
        if self.pcre is not None:
            return self._pcre_count(data, counts, win, deadline)
        total = 0
        for p in self.patterns:
            if self.offset.kind == "any":
                total += p.count(data, COUNT_CAP, deadline)
            else:
                total += int(p.search(data, win[0], win[1], deadline))
        return total

    def _pcre_count(self, data: bytes, counts: list[int], win: tuple[int, int], deadline: float | None) -> int:
        if self.trigger is not None and not evaluate(self.trigger, counts)[0]:
            return 0
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        rx = self.pcre
        try:
            if self.pcre_anchored or self.offset.kind != "any":
                # an offset anchors the match start inside its window
                for p in range(win[0], win[1] + 1):
                    if rx.match(data, p, timeout=timeout):  # type: ignore[attr-defined]
                        return 1
                return 0
            if self.pcre_global:
                n = 0
                for _m in rx.finditer(data, timeout=timeout):  # type: ignore[attr-defined]
                    n += 1
                    if n >= COUNT_CAP:
                        break
                return n
            return int(rx.search(data, timeout=timeout) is not None)  # type: ignore[attr-defined]
        except TimeoutError:
            raise bodysig.DeadlineExceeded from None


def _parse_pcre(text: str, where: str, offset: Offset, nsubs: int) -> SubSig:
    if pcre_engine is None:
        raise Unsupported("pcre", f"{where}: PCRE subsignature needs the 'regex' module")
    first = text.find("/")
    last = text.rfind("/")
    if first < 0 or last <= first:
        raise PatternError(f"{where}: bad PCRE subsignature")
    trig_s, pattern, flags = text[:first], text[first + 1 : last], text[last + 1 :]
    bad = set(flags) - _PCRE_FLAGS
    if bad:
        raise Unsupported("pcre-flag", f"{where}: PCRE flags {''.join(sorted(bad))!r} are not implemented")
    if "E" in flags or "\\Q" in pattern or "(?C" in pattern or "(*" in pattern:
        raise Unsupported("pcre-syntax", f"{where}: PCRE construct without an equivalent here")
    trigger = parse_expression(trig_s, where) if trig_s else None
    if trigger is not None and max(trigger.indexes(), default=0) >= nsubs:
        raise PatternError(f"{where}: PCRE trigger names a missing subsignature")
    rflags = pcre_engine.V0
    rflags |= pcre_engine.IGNORECASE if "i" in flags else 0
    rflags |= pcre_engine.DOTALL if "s" in flags else 0
    rflags |= pcre_engine.MULTILINE if "m" in flags else 0
    rflags |= pcre_engine.VERBOSE if "x" in flags else 0
    try:
        rx = pcre_engine.compile(pattern.encode("latin-1"), rflags)
    except (pcre_engine.error, UnicodeEncodeError, ValueError) as exc:
        raise Unsupported("pcre-syntax", f"{where}: PCRE {pattern[:40]!r} not accepted: {exc}") from None
    return SubSig(offset, pcre=rx, trigger=trigger, pcre_global="g" in flags, pcre_anchored="A" in flags)


def parse_subsig(text: str, where: str, nsubs: int) -> SubSig:
    text = text.strip()
    if text.startswith("(") or text.startswith("${") or text.startswith("fuzzy_img#"):
        raise Unsupported("subsig-special", f"{where}: byte-compare/macro/image subsignature not implemented")
    modifiers = ""
    body = text
    if "/" not in text and "::" in text:
        body, modifiers = text.split("::", 1)
    offset = ANY
    head, sep, rest = body.partition(":")
    if sep and "/" not in head:
        offset = parse_offset(head, where)
        body = rest
    if "/" in body:
        return _parse_pcre(body, where, offset, nsubs)
    if set(modifiers) - set("iwaf"):
        raise Unsupported("subsig-modifier", f"{where}: subsignature modifiers {modifiers!r} not implemented")
    nocase, wide, ascii_, full = ("i" in modifiers, "w" in modifiers, "a" in modifiers, "f" in modifiers)
    variants = []
    if not wide or ascii_:
        variants.append((nocase, False, full))
    if wide:
        variants.append((nocase, True, full))
    keys = tuple((bodysig.check(body, where, nocase=nc, wide=wd).anchor, nc) for nc, wd, _f in variants)
    return SubSig(offset, body, tuple(variants), keys, where)


@dataclass
class LogicalSig:
    name: str
    target: int
    size_min: int
    size_max: int | None
    expr_src: str
    subsigs: list[SubSig]
    origin: str
    zero_true: bool = False  # the expression holds with no match at all (``0<3``): evaluate on every object
    _expr: Node | None = None

    @property
    def expr(self) -> Node:
        """The logical expression, parsed on first use (load checks its indexes only)."""
        if self._expr is None:
            try:
                self._expr = parse_expression(self.expr_src, self.origin)
            except PatternError:
                self._expr = Node("cmp", kids=[Node("sub", index=0)], cmp="<", value=0)  # never true
        return self._expr

    def matches(self, data: bytes, hits: set[int], deadline: float | None) -> bool:
        """``hits``: the subsignatures whose prefilter anchor occurred (others count 0 unchecked)."""
        size = len(data)
        if size < self.size_min or (self.size_max is not None and size > self.size_max):
            return False
        counts = [0] * len(self.subsigs)
        for i, sub in enumerate(self.subsigs):  # PCRE triggers refer to earlier subsignatures
            if sub.pcre is not None or i in hits:
                counts[i] = sub.count(data, counts, deadline)
        return evaluate(self.expr, counts)[0]


def parse_ldb_line(line: str, where: str) -> LogicalSig:
    """One ``.ldb`` line; raises PatternError (bad) or Unsupported (valid, not implemented)."""
    parts = line.split(";")
    if len(parts) < 4:
        raise PatternError(f"{where}: expected Name;TargetDescription;Expression;Subsig0[;...]")
    name, tdb, expr_s, subs = parts[0].strip(), parts[1], parts[2], parts[3:]
    if not name:
        raise PatternError(f"{where}: empty signature name")
    if len(subs) > MAX_SUBSIGS:
        raise PatternError(f"{where}: more than {MAX_SUBSIGS} subsignatures")
    target, size_min, size_max = 0, 0, None
    items = [item.partition(":") for item in tdb.split(",") if item.strip()]
    first = items[0] if items else ("", "", "")
    if any(k.strip() not in ("Target", "Engine") for k, _, _ in items) and not (
            first[0].strip() == "Engine" and _digits(first[2].partition("-")[0])
            and int(first[2].partition("-")[0]) >= 51):
        # ClamAV refuses such a line (and with it the whole file); we refuse the line
        raise PatternError(f"{where}: attributes other than Target need Engine:51-... first in the block")
    for key, _, value in items:
        key = key.strip()
        if key not in _TDB_SUPPORTED:
            raise Unsupported(f"tdb-{key}", f"{where}: target description {key} is not implemented")
        lo_s, _, hi_s = value.partition("-")
        if key == "Target":
            if not _digits(value):
                raise PatternError(f"{where}: bad Target {value!r}")
            target = int(value)
        elif not _digits(lo_s) or (hi_s and not _digits(hi_s)):
            raise PatternError(f"{where}: bad range {key}:{value}")
        elif key == "Engine":
            if int(lo_s) > FLEVEL or (hi_s and int(hi_s) < FLEVEL):
                raise Unsupported("flevel", f"{where}: made for functionality level {value}")
        else:
            size_min, size_max = int(lo_s), (int(hi_s) if hi_s else None)
    if not _EXPR_CHARS.fullmatch(expr_s) or expr_s.count("(") != expr_s.count(")"):
        raise PatternError(f"{where}: bad logical expression {expr_s[:60]!r}")
    top = max((int(x) for x in _EXPR_INDEX.findall(expr_s)), default=-1)
    if top + 1 != len(subs):  # ClamAV refuses both more and fewer
        raise PatternError(f"{where}: {len(subs)} subsignatures but the expression names up to {top}")
    subsigs = [parse_subsig(s, f"{where} subsig {i}", len(subs)) for i, s in enumerate(subs)]
    lsig = LogicalSig(name, target, size_min, size_max, expr_s, subsigs, where)
    if "<" in expr_s or _EXPR_ZERO.search(expr_s):  # only these can hold with no match: decide now
        lsig._expr = parse_expression(expr_s, where)
        lsig.zero_true = evaluate(lsig._expr, [0] * len(subs))[0]
    return lsig


def _digits(text: str) -> bool:
    """ASCII digits only: '²'.isdigit() is true but int('²') raises (found by tests/fuzz)."""
    return text.isascii() and text.isdigit()


_EXPR_CHARS = re.compile(r"[0-9()&|=<>,\s]+")
_EXPR_INDEX = re.compile(r"(?<![=<>,\d])\d+")
_EXPR_ZERO = re.compile(r"=0(?!\d)")
