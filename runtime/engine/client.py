"""Python client of aveserver's own protocol (``AVE/1``), used by the mail filter and aveclient.

Every failure to get an answer (no socket, refused, timeout, connection lost, garbled reply)
raises :class:`AveServerUnavailable`, so the filter can answer the MTA with a 4xx and keep the
message queued rather than deliver it unscanned.
"""

from __future__ import annotations

import json
import os
import socket
import struct

from . import ave1
from .ave1 import AveServerError, AveServerUnavailable
from .verdict import Verdict
from .wire import ConnectionClosed, LineTooLong, Reader

__all__ = ["AveClient", "AveServerError", "AveServerUnavailable"]


class AveClient:
    """One connection to aveserver, opened lazily and reused for successive requests.

    Not thread-safe: give each thread its own client.  ``timeout`` bounds every socket operation
    (connect, send, each receive), so a hung server surfaces as AveServerUnavailable.
    """

    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = 120.0) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: Reader | None = None

    def __enter__(self) -> AveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._reader = None

    def _connect(self) -> Reader:
        if self._reader is not None:
            return self._reader
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise AveServerUnavailable(f"cannot connect to aveserver at {self.socket_path}: {exc}") from None
        self._sock, self._reader = sock, Reader(sock)
        return self._reader

    def _request(self, head: bytes, body: bytes = b"", fd: int | None = None) -> tuple[str, Reader]:
        for attempt in (0, 1):
            fresh = self._reader is None
            reader = self._connect()
            assert self._sock is not None
            try:
                if fd is None:
                    self._sock.sendall(head + body)
                else:  # SCANFD: the descriptor rides with the request line's first byte
                    sent = self._sock.sendmsg([head[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                            struct.pack("i", fd))])
                    self._sock.sendall(head[sent:] + body)
                line = reader.read_until(b"\n", ave1.MAX_LINE).decode("utf-8", "replace")
                return line, reader
            except (ConnectionClosed, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                # A reused connection may have been closed by the server's idle timeout or a
                # graceful stop of an old worker: retry once on a fresh connection.
                if fresh or attempt:
                    raise AveServerUnavailable(f"aveserver closed the connection: {exc!r}") from None
            except (TimeoutError, OSError, LineTooLong) as exc:
                self.close()
                raise AveServerUnavailable(f"aveserver did not answer: {exc!r}") from None
        raise AveServerUnavailable("unreachable")  # pragma: no cover

    def _result(self, line: str, reader: Reader) -> Verdict:
        try:
            head = ave1.parse_result(line)
        except AveServerUnavailable:
            self.close()
            raise
        try:
            doc = json.loads(reader.readexact(head.doc_len))
            cured = None if head.cured_len is None else reader.readexact(head.cured_len)
            return Verdict.from_json(doc, cured)
        except (ConnectionClosed, TimeoutError, OSError, ValueError, KeyError) as exc:
            self.close()
            raise AveServerUnavailable(f"incomplete reply from aveserver: {exc!r}") from None

    # -- API --------------------------------------------------------------------------------
    def ping(self) -> bool:
        line, _ = self._request(ave1.PING)
        return ave1.is_pong(line)

    def version(self) -> dict[str, object]:
        line, _ = self._request(ave1.VERSION)
        return ave1.parse_version(line)

    def scan_bytes(self, data: bytes, filename: str = "stream", cure: bool = False,
                   all_objects: bool = False) -> Verdict:
        """Scan an object sent over the socket; with ``cure`` the verdict carries cured bytes."""
        return self._result(*self._request(ave1.scan_data(len(data), filename, cure, all_objects), data))

    def scan_fd(self, fd: int, name: str = "stream", cure: bool = False, all_objects: bool = False) -> Verdict:
        """Have aveserver scan an open regular file passed as a descriptor (``SCM_RIGHTS``): it reads
        with the access this process has, never needing its own, and answers the whole verdict."""
        return self._result(*self._request(ave1.scan_fd(name, cure, all_objects), fd=fd))

    def scan_file(self, path: str | os.PathLike[str], cure: bool = False, all_objects: bool = False) -> Verdict:
        """Have aveserver read and scan a file (it must be readable by aveserver's user)."""
        head = ave1.scan_file(os.path.abspath(os.fspath(path)), cure, all_objects)
        return self._result(*self._request(head))
