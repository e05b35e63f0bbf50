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
import time

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
        self._version: tuple[float, dict[str, object]] | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(asyncio.open_unix_connection(self.socket_path, limit=1 << 20),
                                          self.timeout)
        except (OSError, TimeoutError) as exc:
            raise AveServerUnavailable(f"cannot connect to aveserver at {self.socket_path}: {exc or 'timeout'}") \
                from None

    async def _request(self, head: bytes, body: bytes = b"") -> tuple[str, asyncio.StreamReader,
                                                                        asyncio.StreamWriter]:
        for attempt in (0, 1):
            reused = bool(self._idle)
            reader, writer = self._idle.pop() if reused else await self._open()
            try:
                writer.write(head + body)
                await writer.drain()
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
            return await self._scan(data, name, cure)

    async def _scan(self, data: bytes, name: str, cure: bool) -> Verdict:
        line, reader, writer = await self._request(ave1.scan_data(len(data), name, cure), data)
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
