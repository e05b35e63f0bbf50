"""The received message on disk: one spool file in TempPath (guide 2.1), never a copy per stage.

A big message would otherwise be held many times over (the DATA buffer, its unstuffed copy, an LF
copy, the request to aveserver, a copy per group, the dot-stuffed copy for the next hop: ~10x the
message for a 50 MB mail).  Instead:

* :class:`DataSpooler` turns the SMTP DATA stream into the message as the filter sees it (dot-
  unstuffed, CRLF -> LF) chunk by chunk as it arrives and, past :data:`IN_MEMORY` bytes, writes
  it to a :class:`Spool` (smaller mail stays in memory: a file would cost more than it saves);
* the filter reads it through a read-only memory map (:meth:`Spool.view`), whose pages belong to
  the page cache, not to the process, and are dropped from the process after each pass
  (:meth:`Spool.forget`);
* aveserver gets the file's descriptor (AVE/1 SCANFD), so the message never crosses the socket;
* a copy that keeps the body as received (clean, or only the X-Anti-Virus header changed) is a
  :class:`FileBody`: its new header block in memory and the rest read from the spool in chunks
  while it is sent (forward.py), shared by every group whose copy is unchanged.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from collections.abc import Iterator

CHUNK = 1 << 20  # bytes read from the spool per step when the body is sent on


class Spool:
    """One message's spool file: created 0600 with O_EXCL in TempPath, unlinked by :meth:`close`."""

    def __init__(self, directory: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix="smtpscanner.", suffix=".msg", dir=directory)
        self.fd = fd
        self.size = 0
        self._map: mmap.mmap | None = None

    @classmethod
    def from_bytes(cls, directory: str, data: bytes) -> Spool:
        spool = cls(directory)
        try:
            spool.write(data)
        except BaseException:
            spool.close()
            raise
        return spool

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.size += n

    def view(self) -> bytes | mmap.mmap:
        """The whole message, read-only and bytes-like (``find``, slices, ``hashlib``)."""
        if self.size == 0:
            return b""
        if self._map is None:
            self._map = mmap.mmap(self.fd, self.size, access=mmap.ACCESS_READ)
        return self._map

    def forget(self) -> None:
        """Give the mapped pages back after a full pass (they stay in the page cache): the filter's
        resident memory does not grow by the message size."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):
                self._map.madvise(mmap.MADV_DONTNEED)

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        if self._map is not None:
            with contextlib.suppress(BufferError, ValueError):
                self._map.close()  # BufferError: a slice view still alive; the fd close frees it later
            self._map = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)


class FileBody:
    """A copy of the message as ``head`` (in memory) followed by the spool from ``offset`` on.

    Behaves as the bytes it stands for where the forwarder needs it (``len``, ``bytes()``) and
    gives them in chunks (:meth:`chunks`) so a big body is never held whole."""

    def __init__(self, head: bytes, spool: Spool, offset: int) -> None:
        self.head = head
        self.spool = spool
        self.offset = offset

    def __len__(self) -> int:
        return len(self.head) + self.spool.size - self.offset

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        if self.head:
            yield self.head
        pos = self.offset
        while pos < self.spool.size:
            chunk = self.spool.read(pos, min(size, self.spool.size - pos))
            if not chunk:
                raise OSError(f"spool file {self.spool.path} ended early")
            yield chunk
            pos += len(chunk)

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks())

    def replace(self, old: bytes, new: bytes) -> bytes:
        """For the few senders that want the whole copy at once (pipe to sendmail, qmail-queue)."""
        return bytes(self).replace(old, new)


#: A message up to this size stays in memory (no spool file, no descriptor passing): for the
#: ~10 KB mail that is most traffic, creating, writing and removing a file and handing its
#: descriptor over costs more than the copies.  Bounded per message, so MaxScanners x 1 MiB.
IN_MEMORY = 1 << 20


class DataSpooler:
    """SMTP DATA (after the 354) -> the message with dot-unstuffing undone.

    Fed the raw chunks as they arrive; finds the terminating ``CRLF.CRLF``; never holds more
    than one chunk plus a line's tail beyond what it keeps.  Each flushed piece ends just before a
    CRLF, so no CRLF, ``CRLF..`` or terminator is ever split between two pieces.  Up to
    ``in_memory`` bytes the pieces are kept as received (:attr:`held`); past it a :class:`Spool`
    is created in ``spool_dir`` and everything goes there with CRLF made LF.  Past ``limit`` bytes
    nothing more is kept (the session answers 452), but the stream is still read to its end."""

    def __init__(self, spool_dir: str | None, limit: int, in_memory: int | None = IN_MEMORY) -> None:
        self.spool_dir = spool_dir
        self.spool: Spool | None = None
        self.limit = limit
        self.in_memory = in_memory if spool_dir else None  # None: always in memory
        self.too_big = False
        self.size = 0  # unstuffed wire bytes seen (CRLF counted as two, as the old in-memory rule)
        self._carry = bytearray()
        self._first = True  # nothing flushed yet: a leading ".." is unstuffed, ".\r\n" ends DATA
        self.held: list[bytes] = []
        self.failed: OSError | None = None  # the spool could not be made or written: answer 4xx

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        self.held = []

    def feed(self, chunk: bytes) -> bytes | None:
        """Take one chunk; returns None while DATA goes on, else what followed the final dot."""
        buf = self._carry
        scan_from = max(0, len(buf) - 4)  # a terminator wholly inside the old carry was found before
        buf += chunk
        if self._first:
            if buf.startswith(b".\r\n"):  # an empty message
                rest = bytes(buf[3:])
                buf.clear()
                return rest
            if len(buf) < 3 and b".\r\n".startswith(bytes(buf)):
                return None  # not yet known whether DATA ends at once
        end = buf.find(b"\r\n.\r\n", scan_from)
        if end >= 0:
            rest = bytes(buf[end + 5:])
            self._flush(buf[: end + 2])
            buf.clear()
            return rest
        # Flush up to the last CRLF (no pattern can straddle that point); a line with no CRLF
        # at all is flushed but for its last four bytes once it is long.
        cut = buf.rfind(b"\r\n")
        if cut <= 0 and len(buf) > 65536:
            cut = len(buf) - 4
        if cut > 0:
            self._flush(buf[:cut])
            del buf[:cut]
        return None

    def _flush(self, piece: bytearray) -> None:
        data = bytes(piece)
        if self._first:
            self._first = False
            if data.startswith(b".."):
                data = data[1:]
        data = data.replace(b"\r\n..", b"\r\n.")
        self.size += len(data)
        if self.limit and self.size > self.limit:
            self.too_big = True
        if self.too_big or self.failed is not None:
            return  # the rest of DATA is still read, so the session stays in step
        if self.spool is None and (self.in_memory is None or self.size <= self.in_memory):
            self.held.append(data)  # as received; pieces never split a CRLF
            return
        try:
            if self.spool is None:
                assert self.spool_dir is not None
                self.spool = Spool(self.spool_dir)
                self.held, held = [], self.held
                for piece in held:
                    self.spool.write(piece.replace(b"\r\n", b"\n"))
            self.spool.write(data.replace(b"\r\n", b"\n"))
        except OSError as exc:
            self.failed = exc
