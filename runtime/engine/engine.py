"""The scan engine: built-in test signatures, hash and body signatures, containers, cure.

One Engine is built per database (BasesPath) and shared read-only by the threads of a worker
process; aveserver builds a new one on SIGHUP and only swaps it in when it loaded completely.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import eicar, mime, targets
from .bodysig import DeadlineExceeded
from .containers import Member, identify, members
from .dsig import CLAMAV_KEY, PublicKey
from .limits import Budget, Corrupted, LimitExceeded, Limits, Protected
from .matcher import BodyMatcher, LogicalMatcher, matcher_version, prefilter_name
from .signatures import SignatureSet, load_signatures
from .streamscan import StreamFilter
from .verdict import ObjectResult, Status, Verdict, worst


class DatabaseError(Exception):
    """The signature set cannot be used as a whole (aveserver keeps its previous one)."""


@dataclass
class _Scan:
    budget: Budget
    cure: bool
    all_objects: bool
    objects: list[ObjectResult] = field(default_factory=list)
    skip_kinds: frozenset[str] = frozenset()
    scanned: int = 0

    def record(self, path: str, status: Status, name: str = "") -> Status:
        if status is not Status.CLEAN or self.all_objects:
            self.objects.append(ObjectResult(path, status, name))
        return status


class _Stop(Exception):
    """A limit fired somewhere below; carries the path of the object being unpacked."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path


@dataclass
class _Outcome:
    status: Status
    replacement: bytes | None = None  # cured bytes of this object
    deleted: bool = False


def _build_in_child(build: Callable[[], object]) -> bool:
    """Run the cold build (parse, write the cache entry, compile and cache the matchers) in a
    forked child, so the parsed set and the compilers' heap never become the caller's private
    memory: aveserver's master (and every worker forked from it) only ever maps the result, and
    a reload onto a new database does not hold it next to the database still serving.
    False when the child failed; the caller then builds in-process and reports the error."""
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:  # pragma: no cover - the child's exit status is what the parent checks
        code = 1
        try:
            build()
            code = 0
        finally:
            os._exit(code)
    try:
        _pid, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped by someone else: whether it succeeded shows in the cache
        return False
    return os.waitstatus_to_exitcode(status) == 0


def _compiled_marker(entry: Path) -> Path:
    """Set once this process's kind of matcher (prefilter and library version) is compiled into the entry."""
    tag = hashlib.sha256(f"{prefilter_name()}|{matcher_version()}".encode()).hexdigest()[:16]
    return entry / f"compiled-{tag}"


def _compiled(entry: Path) -> bool:
    return _compiled_marker(entry).exists()


def _mark_compiled(engine: Engine) -> None:
    if engine.sigs.entry is not None:
        _compiled_marker(engine.sigs.entry).touch(mode=0o600)


class Engine:
    """Scans byte strings; thread-safe."""

    def __init__(self, sigs: SignatureSet, limits: Limits | None = None, cache_dir: Path | None = None) -> None:
        self.sigs = sigs
        self.limits = limits or Limits()
        pre = sigs.prefilter()
        compiled = sigs.entry or cache_dir  # the compiled matchers live in the set's cache entry
        self.matcher = BodyMatcher(sigs.body, sigs.body_digest(), compiled, pre["ndb"])
        self.logical = LogicalMatcher(sigs.logical, compiled, pre["ldb"])
        self.stream = StreamFilter(sigs, self.matcher, self.logical)

    @classmethod
    def load(cls, bases: Path | str, limits: Limits | None = None, cache_dir: Path | None = None,
             key: PublicKey = CLAMAV_KEY) -> Engine:
        """Load and compile a database directory; refuse a set that is unusable as a whole.

        Refused: a missing directory, an unreadable file, a container that fails its MD5 or
        digital-signature check (named; aveserver keeps serving its previous database), or
        signature files of which not a single line could be used.  Individual bad lines are
        only reported (``sigs.errors``).
        """
        try:
            sigs = load_signatures(bases, cache_dir, key, build=cache_dir is None)
            if cache_dir is not None and not sigs.refused and (sigs.entry is None or not _compiled(sigs.entry)):
                # a new database, or an entry without this process's compiled matchers (another binding)
                _build_in_child(lambda: _mark_compiled(cls(load_signatures(bases, cache_dir, key), limits, cache_dir)))
                sigs = load_signatures(bases, cache_dir, key)  # mapped; built here if the child could not
        except OSError as exc:
            raise DatabaseError(str(exc)) from None
        if sigs.refused:
            raise DatabaseError("refused: " + "; ".join(sigs.refused))
        if sigs.errors and sigs.count == 0:
            raise DatabaseError(f"{bases}: no usable signature ({len(sigs.errors)} bad lines; first: "
                                f"{sigs.errors[0]})")
        try:
            return cls(sigs, limits, cache_dir)
        except Exception as exc:  # a matcher that cannot be built must not replace a working one
            raise DatabaseError(f"{bases}: cannot compile signatures: {exc}") from None

    @property
    def record_count(self) -> int:
        return self.sigs.count

    # -- public -----------------------------------------------------------------------------
    def scan(self, data: bytes, name: str = "stream", cure: bool = False, all_objects: bool = False,
             skip_kinds: frozenset[str] = frozenset()) -> Verdict:
        """Scan one top-level object; with ``cure`` return the disinfected bytes when possible.

        ``skip_kinds`` names container kinds not to look into (kavscanner's ``-e`` object types,
        guide 6.2.1): such an object is still matched as a whole, only not unpacked.
        """
        ctx = _Scan(Budget(self.limits), cure, all_objects, skip_kinds=skip_kinds)
        try:
            out = self._scan(data, name, 0, ctx, can_cure=True)
        except _Stop as stop:
            ctx.record(stop.path, Status.ERROR, str(stop))
            out = _Outcome(worst([o.status for o in ctx.objects]))
        except (RecursionError, MemoryError, ValueError, TypeError, LookupError, AttributeError,
                UnicodeError, OSError, EOFError) as exc:
            # A parser bug or a pathological object must cost one ERROR verdict, not the worker.
            ctx.record(name, Status.ERROR, f"scan error: {type(exc).__name__}: {exc}")
            out = _Outcome(Status.ERROR)
        status = worst([out.status] + [o.status for o in ctx.objects])
        cured = out.replacement if cure and status is Status.CURED and not out.deleted else None
        return Verdict(status, ctx.objects, cured=cured, deleted=out.deleted and status is Status.CURED,
                       scanned=ctx.scanned, path=name)

    # -- internals --------------------------------------------------------------------------
    def _hash_names(self, data: bytes) -> list[str]:
        n = len(data)
        found = []
        table = self.sigs.table
        # Only the digests some record of this size could match (hashdb.HashTable.wants): one
        # table holds all three algorithms, the digest length tells them apart.
        for algo in table.wants("file", n):
            hit = self.sigs.hash_name("file", hashlib.new(algo, data).hexdigest(), n)
            if hit:
                found.append(hit)
        if table.count("section"):
            for sect in targets.pe_sections(data):
                for algo in table.wants("section", len(sect)):
                    hit = self.sigs.hash_name("section", hashlib.new(algo, sect).hexdigest(), len(sect))
                    if hit:
                        found.append(hit)
        return found

    def _allow_listed(self, data: bytes) -> bool:
        """.fp/.sfp: an object whose own hash is listed is clean whatever matched it."""
        for algo, keys in self.sigs.fp.items():
            if keys:
                hexd = hashlib.new(algo, data).hexdigest()
                if f"{hexd}:{len(data)}" in keys or f"{hexd}:*" in keys:
                    return True
        return False

    def detect(self, data: bytes, deadline: float | None = None) -> list[str]:
        """Every signature name matching this one object (no unpacking), allow-lists applied."""
        names = self._hash_names(data) + self.matcher.match(data, deadline) + self.logical.match(data, deadline)
        if names and self._allow_listed(data):
            return []
        return list(dict.fromkeys(names))

    def _infected(self, ctx: _Scan, path: str, names: list[str]) -> _Outcome:
        # Signatures from the database carry no cure routine: a cure request fails (6.2.2).
        status = Status.CUREFAILED if ctx.cure else Status.INFECTED
        for nm in names:
            ctx.record(path, status, nm)
        return _Outcome(status)

    def _scan(self, data: bytes, path: str, depth: int, ctx: _Scan, can_cure: bool) -> _Outcome:
        try:
            ctx.budget.check_time()
        except LimitExceeded as exc:
            raise _Stop(path, str(exc)) from None
        ctx.scanned += 1
        variant = eicar.detect(data)
        if variant is not None:
            return self._eicar(data, path, ctx, variant, can_cure)
        try:
            names = self.detect(data, ctx.budget.deadline)
        except DeadlineExceeded:
            raise _Stop(path, f"scan time limit ({self.limits.max_time:g} s) exceeded") from None
        if names:
            return self._infected(ctx, path, names)
        kind = identify(data)
        if kind in (None, "uue") and mime.looks_like_mail(data):
            kind = "mime"
        if kind is None or kind in ctx.skip_kinds:
            ctx.record(path, Status.CLEAN)
            return _Outcome(Status.CLEAN)
        if depth >= self.limits.max_depth:
            raise _Stop(path, f"nesting depth limit ({self.limits.max_depth}) exceeded")
        try:
            if kind == "mime":
                return self._mime(data, path, depth, ctx, can_cure)
            return self._archive(kind, data, path, depth, ctx)
        except LimitExceeded as exc:
            raise _Stop(path, str(exc)) from None

    def _eicar(self, data: bytes, path: str, ctx: _Scan, v: eicar.Variant, can_cure: bool) -> _Outcome:
        if v.status is not Status.INFECTED:
            return _Outcome(ctx.record(path, v.status, v.name))
        if not ctx.cure:
            return _Outcome(ctx.record(path, Status.INFECTED, v.name))
        if can_cure and v.curable:
            return _Outcome(ctx.record(path, Status.CURED, v.name), eicar.cure(data, v))
        if can_cure and v.delete:
            return _Outcome(ctx.record(path, Status.CURED, v.name), None, deleted=True)
        return _Outcome(ctx.record(path, Status.CUREFAILED, v.name))

    def _archive(self, kind: str, data: bytes, path: str, depth: int, ctx: _Scan) -> _Outcome:
        statuses = [Status.CLEAN]
        try:
            for m in members(kind, data, path, ctx.budget):
                sub = f"{path}/{m.name}"
                if isinstance(m.error, Protected):
                    statuses.append(ctx.record(sub, Status.PROTECTED, str(m.error)))
                elif m.error is not None:
                    statuses.append(ctx.record(sub, Status.CORRUPTED, str(m.error)))
                elif m.chunks is not None:
                    statuses.append(self._streamed(m, sub, depth, ctx))
                else:
                    # Archives are not rewritten: a curable member inside one is CUREFAILED.
                    statuses.append(self._scan(m.data, sub, depth + 1, ctx, can_cure=False).status)
        except Corrupted as exc:
            statuses.append(ctx.record(path, Status.CORRUPTED, str(exc)))
        return _Outcome(worst(statuses))

    def _streamed(self, m: Member, path: str, depth: int, ctx: _Scan) -> Status:
        """A big member: cleared as a stream, or read whole and scanned as any other (streamscan.py)."""
        assert m.chunks is not None
        try:
            data = self.stream.scan(m.chunks(True), lambda: m.chunks(False))  # type: ignore[misc]
        except Corrupted as exc:
            return ctx.record(path, Status.CORRUPTED, str(exc))
        if data is not None:
            return self._scan(data, path, depth + 1, ctx, can_cure=False).status
        try:
            ctx.budget.check_time()
        except LimitExceeded as exc:
            raise _Stop(path, str(exc)) from None
        ctx.scanned += 1
        return ctx.record(path, Status.CLEAN)

    def _mime(self, data: bytes, path: str, depth: int, ctx: _Scan, can_cure: bool) -> _Outcome:
        if not (ctx.cure and can_cure):  # nothing to rewrite: no parse tree needed (big mail)
            simple = mime.leaves_of(data)
            if simple is not None:
                statuses = [Status.CLEAN]
                for name, payload in simple:
                    ctx.budget.member()
                    ctx.budget.charge(len(payload), len(payload), len(payload))
                    statuses.append(self._scan(payload, f"{path}/{name}", depth + 1, ctx, can_cure).status)
                    del payload
                return _Outcome(worst(statuses))
        msg = mime.parse(data)
        statuses = [Status.CLEAN]
        changed = False
        for name, payload, part in mime.leaves(msg):
            ctx.budget.member()
            ctx.budget.charge(len(payload), len(payload), len(payload))
            out = self._scan(payload, f"{path}/{name}", depth + 1, ctx, can_cure)
            statuses.append(out.status)
            if ctx.cure and can_cure and (out.replacement is not None or out.deleted):
                mime.replace_payload(part, out.replacement)
                changed = True
        status = worst(statuses)
        return _Outcome(status, mime.serialize(msg) if changed else None)
