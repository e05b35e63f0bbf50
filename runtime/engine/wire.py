"""A small buffered reader over a stream socket, shared by the server and the client.

Both protocols mix text lines with raw byte blocks on one connection, so neither ``makefile``
nor line-based helpers fit; this reader gives ``readline``/``read_until``/``readexact`` with an
overall size bound and lets the caller poll a stop condition while waiting for the next request.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable


class ConnectionClosed(Exception):
    """The peer closed the connection (cleanly between requests or in the middle of one)."""


class LineTooLong(Exception):
    """A request line exceeded its bound."""


class Reader:
    def __init__(self, sock: socket.socket, poll: Callable[[], bool] | None = None) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.poll = poll  # called on every socket timeout; returning True aborts the wait
        self.fds: list[int] = []  # descriptors passed with SCM_RIGHTS (clamd FILDES)
        self._unix = sock.family == socket.AF_UNIX

    def _recv(self, n: int) -> bytes:
        if not self._unix:
            return self.sock.recv(n)
        data, anc, _flags, _addr = self.sock.recvmsg(n, socket.CMSG_SPACE(4 * 4))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                self.fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
        return data

    def close_fds(self) -> None:
        while self.fds:
            os.close(self.fds.pop())

    def _fill(self) -> None:
        while True:
            try:
                data = self._recv(1 << 16)
            except TimeoutError:
                if self.poll is None or self.poll():
                    raise
                continue
            if not data:
                raise ConnectionClosed()
            self.buf += data
            return

    def pending(self) -> bool:
        return bool(self.buf)

    def peek(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        return bytes(self.buf[:n])

    def read_until(self, sep: bytes, limit: int) -> bytes:
        """Bytes up to ``sep`` (excluded, consumed); LineTooLong beyond ``limit`` bytes."""
        start = 0
        while True:
            idx = self.buf.find(sep, start)
            if idx >= 0:
                out = bytes(self.buf[:idx])
                del self.buf[: idx + len(sep)]
                return out
            if len(self.buf) > limit:
                raise LineTooLong()
            start = max(0, len(self.buf) - len(sep) + 1)
            self._fill()

    def readexact(self, n: int) -> bytes:
        if len(self.buf) >= n:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        chunks = [bytes(self.buf)]
        got = len(self.buf)
        self.buf.clear()
        while got < n:
            try:
                data = self._recv(min(1 << 20, n - got))
            except TimeoutError:
                if self.poll is None or self.poll():
                    raise
                continue
            if not data:
                raise ConnectionClosed()
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)
