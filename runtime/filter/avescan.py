"""An asyncio client of aveserver's AVE/1 protocol (runtime/engine/client.py is the blocking one).

The filter waits for many scans at once on one event loop; a timeout (MaxCheckTime) must cancel
a scan cleanly, which a thread blocked in ``recv`` cannot do.  Replies are decoded with the
engine's own :class:`Verdict`, so both sides agree on statuses and names.  Any failure to get an
answer raises :class:`AveServerUnavailable` -> the MTA gets a 4xx and keeps the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import weakref

from runtime.engine import ave1
from runtime.engine.ave1 import AveServerError, AveServerUnavailable
from runtime.engine.verdict import Verdict

__all__ = ["AsyncAveClient", "AveServerError", "AveServerUnavailable"]


class AsyncAveClient:
    def __init__(self, socket_path: str, timeout: float = 60.0, pool_size: int = 6) -> None:
        """``pool_size`` bounds the connections open at once (in use plus idle): aveserver serves a
        fixed number of connections (workers x threads) and an idle one holds a server thread, so
        more would queue behind our own idle connections."""
        self.socket_path = socket_path
        self.timeout = timeout
        self.pool_size = pool_size
        self._slots = asyncio.Semaphore(pool_size)
        #: spawned per session (stdio), many smtpscanners share aveserver's fixed set of serving
        #: threads: then a connection is not kept idle between requests.
        self.keep_idle = True
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._socks: weakref.WeakKeyDictionary[asyncio.StreamWriter, socket.socket] = weakref.WeakKeyDictionary()
        self._version: tuple[float, dict[str, object]] | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # Our own socket object, kept on the writer: SCANFD sends a descriptor with ``sendmsg``,
        # which asyncio's transport does not offer.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, self.socket_path), self.timeout)
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise AveServerUnavailable(f"cannot connect to aveserver at {self.socket_path}: {exc or 'timeout'}") \
                from None
        self._socks[writer] = sock
        return reader, writer

    async def _send(self, writer: asyncio.StreamWriter, head: bytes, body: bytes, fd: int | None) -> None:
        if fd is None:
            writer.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                writer.write(body)  # no head + body copy of a large object
            await writer.drain()
            return
        # The connection is idle (every request is drained and answered before the next), so the
        # request line and its descriptor can go straight to the socket, beside the transport.
        sock = self._socks[writer]
        sent = socket.send_fds(sock, [head], [fd])
        if sent != len(head):
            raise ConnectionError("short write of a SCANFD request")

    async def _request(self, head: bytes, body: bytes = b"", fd: int | None = None) -> tuple[
            str, asyncio.StreamReader, asyncio.StreamWriter]:
        for attempt in (0, 1):
            reused = bool(self._idle)
            reader, writer = self._idle.pop() if reused else await self._open()
            try:
                await self._send(writer, head, body, fd)
                raw = await reader.readline()
                if not raw:
                    raise ConnectionResetError("closed")
                return raw.decode("utf-8", "replace").rstrip("\r\n"), reader, writer
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                writer.close()
                # An idle pooled connection may have been closed by aveserver (idle timeout,
                # reload): retry once on a fresh one.
                if attempt or not reused:
                    raise AveServerUnavailable(f"aveserver connection failed: {exc!r}") from None
            except BaseException:
                writer.close()  # cancelled (MaxCheckTime): the stream is in an unknown state
                raise
        raise AveServerUnavailable("unreachable")  # pragma: no cover

    def _keep(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.keep_idle and len(self._idle) < self.pool_size:
            self._idle.append((reader, writer))
        else:
            writer.close()

    async def scan(self, data: bytes, name: str = "stream", cure: bool = False) -> Verdict:
        async with self._slots:
            return await self._scan(ave1.scan_data(len(data), name, cure), data, None)

    async def scan_fd(self, fd: int, name: str = "stream", cure: bool = False) -> Verdict:
        """Scan a regular file by handing aveserver its open descriptor (AVE/1 SCANFD): a big
        message is neither copied into a request nor held by aveserver's socket buffers."""
        async with self._slots:
            return await self._scan(ave1.scan_fd(name, cure), b"", fd)

    async def _scan(self, head_line: bytes, data: bytes, fd: int | None) -> Verdict:
        line, reader, writer = await self._request(head_line, data, fd)
        try:
            head = ave1.parse_result(line)
        except (AveServerError, AveServerUnavailable):
            writer.close()
            raise
        try:
            doc = json.loads(await reader.readexactly(head.doc_len))
            cured = None if head.cured_len is None else await reader.readexactly(head.cured_len)
            verdict = Verdict.from_json(doc, cured)
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
            writer.close()
            raise AveServerUnavailable(f"incomplete reply from aveserver: {exc!r}") from None
        except BaseException:
            writer.close()
            raise
        self._keep(reader, writer)
        return verdict

    async def version(self, max_age: float = 300.0) -> dict[str, object]:
        """Product, record count and database date (cached: it feeds every X-Anti-Virus header)."""
        now = time.monotonic()
        if self._version and now - self._version[0] < max_age:
            return self._version[1]
        async with self._slots:
            return await self._get_version(now)

    async def _get_version(self, now: float) -> dict[str, object]:
        line, reader, writer = await self._request(ave1.VERSION)
        try:
            doc = ave1.parse_version(line)
        except (AveServerUnavailable, ValueError):
            writer.close()
            raise
        self._keep(reader, writer)
        self._version = (now, doc)
        return doc

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            with contextlib.suppress(Exception):
                writer.close()
