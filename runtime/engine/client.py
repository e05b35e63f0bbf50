"""Python client of aveserver's own protocol (``AVE/1``), used by the mail filter and aveclient.

Every failure to get an answer (no socket, refused, timeout, connection lost, garbled reply)
raises :class:`AveServerUnavailable`, so the filter can answer the MTA with a 4xx and keep the
message queued rather than deliver it unscanned.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse

from .verdict import Verdict
from .wire import ConnectionClosed, LineTooLong, Reader


class AveServerUnavailable(Exception):
    """aveserver could not be reached or did not answer in time (temporary failure)."""


class AveServerError(Exception):
    """aveserver answered with an error for this request (e.g. object too large, unreadable file)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code


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

    def _request(self, head: bytes, body: bytes = b"") -> tuple[str, Reader]:
        for attempt in (0, 1):
            fresh = self._reader is None
            reader = self._connect()
            assert self._sock is not None
            try:
                self._sock.sendall(head + body)
                line = reader.read_until(b"\n", 65536).decode("utf-8", "replace")
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
        parts = line.split(" ")
        if len(parts) >= 3 and parts[1] != "200":
            raise AveServerError(int(parts[1]) if parts[1].isdigit() else 500, " ".join(parts[2:]))
        if len(parts) != 5 or parts[2] != "RESULT" or not parts[3].isdigit():
            self.close()
            raise AveServerUnavailable(f"unexpected reply from aveserver: {line[:200]!r}")
        try:
            doc = json.loads(reader.readexact(int(parts[3])))
            cured = None if parts[4] == "-" else reader.readexact(int(parts[4]))
            return Verdict.from_json(doc, cured)
        except (ConnectionClosed, TimeoutError, OSError, ValueError, KeyError) as exc:
            self.close()
            raise AveServerUnavailable(f"incomplete reply from aveserver: {exc!r}") from None

    @staticmethod
    def _flags(cure: bool, all_objects: bool) -> str:
        return ("c" if cure else "") + ("a" if all_objects else "") or "-"

    # -- API --------------------------------------------------------------------------------
    def ping(self) -> bool:
        line, _ = self._request(b"AVE/1 PING\n")
        return line == "AVE/1 200 PONG"

    def version(self) -> dict[str, object]:
        line, _ = self._request(b"AVE/1 VERSION\n")
        if not line.startswith("AVE/1 200 "):
            raise AveServerUnavailable(f"unexpected reply from aveserver: {line[:200]!r}")
        return json.loads(line[len("AVE/1 200 "):])

    def scan_bytes(self, data: bytes, filename: str = "stream", cure: bool = False,
                   all_objects: bool = False) -> Verdict:
        """Scan an object sent over the socket; with ``cure`` the verdict carries cured bytes."""
        name = urllib.parse.quote(filename, safe="/")
        head = f"AVE/1 SCANDATA {self._flags(cure, all_objects)} {len(data)} {name}\n".encode()
        return self._result(*self._request(head, data))

    def scan_file(self, path: str | os.PathLike[str], cure: bool = False, all_objects: bool = False) -> Verdict:
        """Have aveserver read and scan a file (it must be readable by aveserver's user)."""
        name = urllib.parse.quote(os.path.abspath(os.fspath(path)), safe="/")
        head = f"AVE/1 SCANFILE {self._flags(cure, all_objects)} {name}\n".encode()
        return self._result(*self._request(head))
