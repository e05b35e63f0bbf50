"""Big archive members scanned as a stream: cleared without ever being held whole (issue 20).

A 35 MB zip member used to be unpacked into one buffer next to the message and the archive.  Most
such members are clean, and proving that does not need them whole: every detection of the engine
has a *necessary condition* that can be checked chunk by chunk with bounded memory:

- a hash signature (.hdb/.hsb) needs the member's MD5/SHA-1/SHA-256 and size: hashed incrementally;
- a body (.ndb) or logical (.ldb) signature needs its literal anchor to occur (the same necessary
  condition the Aho-Corasick prefilter relies on, runtime/engine/matcher.py): the anchors are looked
  for in windows that overlap by the longest anchor, so an anchor cut by a chunk boundary is found;
- HTML/ASCII-normalised signatures: the same, on the ASCII normalisation produced incrementally
  (targets.AsciiStream); an HTML member is read whole (comment removal is not local);
- uuencode inside the member: a ``begin`` line, looked for the same way.

Everything else is decided by the member's first 64 KiB, as the engine decides it: EICAR (at most
133 bytes), container kinds and mail (nested objects are unpacked from the whole member, as before,
within the same Budget), PE (section hashes, target 1), and signatures no literal rules out (a
short anchor, an always-evaluated logical signature) for a type the head has.  Any of these, or any
anchor or hash hit, and the member is read whole (a second reading of the archive, not charged
twice) and scanned by ``Engine._scan`` exactly as before: streaming only ever *clears* a member, it
never finds anything itself, so the verdicts are those of the whole-member scan
(tests/engine/test_stream_members.py compares both on EICAR, offsets and hashes at chunk borders).

With a signature set full of short anchors (a real daily.cvd has some) most big members are
candidates and are read whole, which costs what it cost before plus one more decompression.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator

from . import mime, targets
from .containers import identify
from .matcher import BodyMatcher, LogicalMatcher
from .signatures import SignatureSet

HEAD = 65536 + 1  # looks_like_mail reads 64 KiB and whether there is more; type checks read less
_UU_LINE = b"\nbegin "  # containers.identify's uuencode test, whose regex needs this line start


class StreamFilter:
    """Whether a member, given as chunks, can be cleared without holding it (thread-safe: no state)."""

    def __init__(self, sigs: SignatureSet, body: BodyMatcher, logical: LogicalMatcher) -> None:
        self.sigs = sigs
        self.body = body
        self.logical = logical
        self._unfiltered = frozenset(body.unfiltered_targets | logical.always_targets)
        self._raw_ldb, ldb_norm = logical.literals
        self._norm = [lits for lits in (body.norm_literals, ldb_norm) if lits]
        self._has_norm = bool(self._norm) or body.norm_unfiltered
        # windows overlap by the longest anchor less one byte: an anchor cut by a border is whole in one
        self._raw_overlap = max(body.longest_raw, self._raw_ldb.longest, len(_UU_LINE)) - 1
        self._norm_overlap = max([1] + [lits.longest for lits in self._norm]) - 1

    def _needs_whole(self, head: bytes) -> bool:
        """What the first HEAD bytes say: an object the stream cannot judge."""
        if identify(head) is not None or mime.looks_like_mail(head) or head[:2] == b"MZ":
            return True
        if any(targets.type_ok(t, head) for t in self._unfiltered):
            return True
        if targets.is_html(head) and self._has_norm:
            return True
        return targets.is_text(head) and self.body.norm_unfiltered

    def scan(self, chunks: Iterator[bytes], reread: Callable[[], Iterator[bytes]]) -> bytes | None:
        """None when the member is clean; otherwise the whole member, to be scanned as before.

        ``chunks`` is read to its end in every case, so a corrupt member and the Budget's limits
        fire exactly as when it was unpacked whole; ``reread`` yields the same bytes again.
        """
        first = bytearray()
        for chunk in chunks:
            first += chunk
            if len(first) >= HEAD:
                break
        if len(first) < HEAD or self._needs_whole(bytes(first[:HEAD])):
            out = io.BytesIO()
            out.write(first)
            del first
            for chunk in chunks:
                out.write(chunk)
            return out.getvalue()
        if self._suspicious(bytes(first), chunks):
            out = io.BytesIO()
            for chunk in reread():
                out.write(chunk)
            return out.getvalue()
        return None

    def _suspicious(self, first: bytes, chunks: Iterator[bytes]) -> bool:
        """Stream the member: True at the first anchor, uuencode line or hash hit (read on to the end)."""
        # The size is known only at the end: compute the algorithms any record uses, look up those
        # the final size still wants.
        hashes = [hashlib.new(a) for a in self.sigs.table.algorithms("file")]
        text = targets.AsciiStream() if self._has_norm and targets.is_text(first) else None
        tail = ntail = b""
        size = 0
        hit = False
        for chunk in _prepend(first, chunks):
            size += len(chunk)
            for h in hashes:
                h.update(chunk)
            if hit:
                continue  # read to the end all the same: errors and limits as for a whole member
            hit, tail = self._raw_in(tail, chunk)
            if text is not None and not hit:
                hit, ntail = self._norm_in(ntail, text.feed(chunk))
        if hit:
            return True
        wanted = self.sigs.table.wants("file", size)
        return any(self.sigs.hash_name("file", h.hexdigest(), size) for h in hashes if h.name in wanted)


    def _raw_in(self, tail: bytes, chunk: bytes) -> tuple[bool, bytes]:
        found = _overlapping(tail, chunk, self._raw_overlap, self._raw_found)
        return found, _tail(tail, chunk, self._raw_overlap)

    def _raw_found(self, data: bytes) -> bool:
        return _UU_LINE in data or self.body.raw_anchor_in(data) or self._raw_ldb.found(data)

    def _norm_in(self, tail: bytes, text: bytes) -> tuple[bool, bytes]:
        found = _overlapping(tail, text, self._norm_overlap, lambda d: any(lits.found(d) for lits in self._norm))
        return found, _tail(tail, text, self._norm_overlap)


def _overlapping(tail: bytes, chunk: bytes, overlap: int, found: Callable[[bytes], bool]) -> bool:
    """Whether ``found`` holds for the chunk or for the seam (the previous ``overlap`` bytes and the
    chunk's first ``overlap``): every word of at most overlap + 1 bytes lies whole in one of the two,
    and the chunk is not copied into a window."""
    return found(chunk) or (bool(tail) and found(tail + chunk[:overlap]))


def _tail(tail: bytes, chunk: bytes, overlap: int) -> bytes:
    """The last ``overlap`` bytes of the stream so far."""
    if not overlap:
        return b""
    return chunk[-overlap:] if len(chunk) >= overlap else (tail + chunk)[-overlap:]


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
