"""Transfers from one update source: http, https, file:// or a plain directory (guide 5.1, 5.1.4, 5.1.5).

Why our own small layer over urllib rather than a download library: keepup2date needs exactly
four things a generic client does not give together — a connect timeout distinct from the
per-read timeout (a mirror that accepts and then hangs must not hang cron), HTTP Range resume of
a broken download, conditional requests (If-None-Match / If-Modified-Since: "nothing new" costs
one small answer), and errors that name the source and the reason in one line.  A 429 or 403
answer carries the cool-down the server asked for (Retry-After) so sources.py can persist it.

Everything fetched is untrusted until runtime/engine/cvd.py has verified it; this module only
bounds sizes and times and refuses what is obviously not a database (an HTML error page).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_DOWNLOAD = 3 * 1024**3  # above ClamAV's largest container; a bigger answer is refused
CHUNK = 1 << 16
DEFAULT_429_COOLDOWN = 3600.0  # no Retry-After: an hour, as ClamAV's own updater waits at least
DEFAULT_403_COOLDOWN = 24 * 3600.0  # 403 means "blocked": do not hammer the source all day
MAX_COOLDOWN = 7 * 24 * 3600.0


class FetchError(Exception):
    """One-line failure of a source: ``<source>: <reason>``; ``cooldown`` seconds for 429/403."""

    def __init__(self, source: str, reason: str, cooldown: float | None = None, missing: bool = False) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.cooldown = cooldown
        self.missing = missing  # 404 / no such file: a cdiff may legitimately be absent


class LocalWriteError(OSError):
    """Writing a download on this host failed (a full disk, a quota, EIO): not the source's fault.

    ``filename`` is the file that could not be written. The partial download is removed before
    this is raised: a part that filled the disk would keep the filter's own temporary files (and
    aveserver's next update) short of room until the next run, and nothing half-written stays.
    """


def _local_error(exc: OSError, path: Path) -> LocalWriteError:
    return LocalWriteError(exc.errno, exc.strerror or str(exc), str(path))


def _write_all(out: BinaryIO, block: bytes, path: Path) -> None:
    """Unbuffered write of ``block`` (a raw write may be short); a failure names ``path``."""
    view = memoryview(block)
    while view:
        try:
            n = out.write(view)
        except OSError as exc:
            raise _local_error(exc, path) from None
        view = view[n or 0:]


@dataclass(frozen=True)
class Options:
    connect_timeout: float = 30.0
    receive_timeout: float = 60.0
    proxy: str | None = None  # http://user:pass@host:port, or None for a direct connection
    progress: bool = False  # a progress line on a terminal (never when KeepSilent or not a tty)


def retry_after(value: str | None, default: float) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), bounded to a week."""
    if value:
        value = value.strip()
        if value.isdigit():
            return min(float(value), MAX_COOLDOWN)
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
            return max(0.0, min(when - time.time(), MAX_COOLDOWN))
        except (TypeError, ValueError):
            pass
    return default


def display_url(url: str) -> str:
    """A URL for logs: credentials never appear in a report."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None or parts.username is not None:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def _timed_connection(base: type[http.client.HTTPConnection], receive: float) -> type:
    class Conn(base):  # type: ignore[misc, valid-type]
        def connect(self) -> None:
            super().connect()
            self.sock.settimeout(receive)  # connect used ConnectTimeout; every read waits ReceiveTimeout

    return Conn


class _HTTP(urllib.request.HTTPHandler):
    def __init__(self, receive: float) -> None:
        super().__init__()
        self.conn = _timed_connection(http.client.HTTPConnection, receive)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.conn, req)


class _HTTPS(urllib.request.HTTPSHandler):
    def __init__(self, receive: float) -> None:
        super().__init__()
        self.conn = _timed_connection(http.client.HTTPSConnection, receive)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.conn, req, context=self._context)  # type: ignore[attr-defined]


class Source:
    """One update source: a base URL or directory holding ClamAV's mirror layout."""

    def __init__(self, base: str, opts: Options, txt: str | None = None) -> None:
        self.base = base
        self.opts = opts
        self.txt = txt
        parts = urllib.parse.urlsplit(base)
        self.local: Path | None = None
        if parts.scheme in ("", "file"):
            self.local = Path(urllib.parse.unquote(parts.path) if parts.scheme == "file" else base)
        elif parts.scheme not in ("http", "https"):
            raise ValueError(f"{base}: unsupported update source scheme {parts.scheme!r} "
                             "(http, https, file or a directory)")
        self.name = display_url(base) if self.local is None else str(self.local)
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({"http": opts.proxy, "https": opts.proxy} if opts.proxy else {}),
            _HTTP(opts.receive_timeout), _HTTPS(opts.receive_timeout)]
        self._opener = urllib.request.build_opener(*handlers)

    def __str__(self) -> str:
        return self.name

    # -- helpers -----------------------------------------------------------------------------------
    def _url(self, name: str) -> str:
        return urllib.parse.urljoin(self.base if self.base.endswith("/") else self.base + "/", name)

    def _fail(self, what: str, reason: str, **kw: object) -> FetchError:
        return FetchError(f"{self.name} ({what})", reason, **kw)  # type: ignore[arg-type]

    def _open(self, name: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        req = urllib.request.Request(self._url(name), headers={"User-Agent": "kav4mailservers-keepup2date/5.5",
                                                               **headers})
        try:
            return self._opener.open(req, timeout=self.opts.connect_timeout)  # type: ignore[return-value]
        except urllib.error.HTTPError as exc:
            code = exc.code
            hdrs = exc.headers
            exc.close()
            if code == 304:
                raise
            if code == 429:
                raise self._fail(name, "HTTP 429 Too Many Requests: cooling down",
                                 cooldown=retry_after(hdrs.get("Retry-After"), DEFAULT_429_COOLDOWN)) from None
            if code == 403:
                raise self._fail(name, "HTTP 403 Forbidden: cooling down",
                                 cooldown=retry_after(hdrs.get("Retry-After"), DEFAULT_403_COOLDOWN)) from None
            if code == 407:
                raise self._fail(name, "the proxy refused authentication (HTTP 407): check ProxyAddress "
                                 "user and password") from None
            if code == 401 and self.opts.proxy:  # tinyproxy answers wrong credentials with 401, not 407
                raise self._fail(name, "HTTP 401 Unauthorized through the proxy: the proxy (or the server) refused "
                                 "the credentials; check ProxyAddress user and password") from None
            if code == 404:
                raise self._fail(name, "not found (HTTP 404)", missing=True) from None
            raise self._fail(name, f"HTTP {code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise self._fail(name, _reason(exc.reason)) from None
        except TimeoutError:
            raise self._fail(name, f"timed out: no answer within {self.opts.connect_timeout:g} s "
                             "(ConnectTimeout)") from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._fail(name, _reason(exc)) from None

    def _check_type(self, name: str, resp: http.client.HTTPResponse) -> None:
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if ctype.startswith(("text/html", "application/xhtml")):
            raise self._fail(name, f"the server sent an HTML page ({ctype.split(';')[0]}), not a database")

    # -- operations --------------------------------------------------------------------------------
    def header(self, name: str, validators: dict[str, str]) -> tuple[bytes | None, dict[str, str]]:
        """The first 512 bytes of ``name`` (its CVD header), or None when unchanged since ``validators``.

        Over HTTP a conditional request with a Range: an unchanged file costs a 304, a changed one
        512 bytes.  Returns the new validators (ETag / Last-Modified, or size and mtime locally).
        """
        if self.local is not None:
            path = self.local / name
            try:
                st = path.stat()
                new = {"stat": f"{st.st_size}:{st.st_mtime_ns}"}
                if validators.get("stat") == new["stat"]:
                    return None, new
                with open(path, "rb") as fh:
                    return fh.read(512), new
            except FileNotFoundError:
                raise self._fail(name, "no such file", missing=True) from None
            except OSError as exc:
                raise self._fail(name, _reason(exc)) from None
        headers = {"Range": "bytes=0-511"}
        if validators.get("etag"):
            headers["If-None-Match"] = validators["etag"]
        if validators.get("last_modified"):
            headers["If-Modified-Since"] = validators["last_modified"]
        try:
            resp = self._open(name, headers)
        except urllib.error.HTTPError:  # 304
            return None, validators
        with resp:
            self._check_type(name, resp)
            new = {k: v for k, v in (("etag", resp.headers.get("ETag")),
                                     ("last_modified", resp.headers.get("Last-Modified"))) if v}
            try:
                data = _read_exactly(resp, 512)
            except (OSError, http.client.HTTPException) as exc:
                raise self._fail(name, _reason(exc)) from None
        return data, new

    def small(self, name: str, limit: int = 64 * 1024**2) -> bytes:
        """A whole small file (a .cdiff) in memory; larger than ``limit`` is refused."""
        if self.local is not None:
            try:
                with open(self.local / name, "rb") as fh:
                    data = fh.read(limit + 1)
            except FileNotFoundError:
                raise self._fail(name, "no such file", missing=True) from None
            except OSError as exc:
                raise self._fail(name, _reason(exc)) from None
        else:
            resp = self._open(name, {})
            with resp:
                self._check_type(name, resp)
                try:
                    data = resp.read(limit + 1)
                except (OSError, http.client.HTTPException) as exc:
                    raise self._fail(name, _reason(exc)) from None
        if len(data) > limit:
            raise self._fail(name, f"larger than {limit} bytes")
        return data

    def download(self, name: str, dest: Path) -> Path:
        """Download ``name`` to ``dest``, resuming ``dest.part`` left by a broken earlier run."""
        if self.local is not None:
            try:
                with open(self.local / name, "rb") as src, open(dest, "wb", buffering=0) as out:
                    while block := src.read(CHUNK):
                        _write_all(out, block, dest)
            except LocalWriteError:
                dest.unlink(missing_ok=True)
                raise
            except FileNotFoundError:
                raise self._fail(name, "no such file", missing=True) from None
            except OSError as exc:
                raise self._fail(name, _reason(exc)) from None
            return dest
        part = dest.with_name(dest.name + ".part")
        meta = dest.with_name(dest.name + ".part.json")
        done = dest.with_name(dest.name + ".json")
        kept = _read_meta(done)
        if dest.exists() and kept.get("url") == self._url(name) and (kept.get("etag") or kept.get("last_modified")):
            # complete from an earlier run that failed later on: reuse it unless the source changed
            cond = ({"If-None-Match": kept["etag"]} if kept.get("etag")
                    else {"If-Modified-Since": kept["last_modified"]})
            try:
                resp = self._open(name, cond)
            except urllib.error.HTTPError:  # 304
                return dest
            resp.close()
        dest.unlink(missing_ok=True)
        have = part.stat().st_size if part.exists() else 0
        saved = _read_meta(meta)
        headers: dict[str, str] = {}
        if have and saved.get("url") == self._url(name) and (saved.get("etag") or saved.get("last_modified")):
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = saved.get("etag") or saved["last_modified"]
        else:
            have = 0
        resp = self._open(name, headers)
        with resp:
            self._check_type(name, resp)
            total: int | None = None
            if resp.status == 206:
                crange = resp.headers.get("Content-Range", "")
                if not crange.startswith(f"bytes {have}-"):
                    raise self._fail(name, f"resume answered with Content-Range {crange[:60]!r}, asked from {have}")
                total = int(crange.rsplit("/", 1)[-1]) if crange.rsplit("/", 1)[-1].isdigit() else None
                mode = "ab"
            else:
                have = 0
                mode = "wb"
                clen = resp.headers.get("Content-Length")
                total = int(clen) if clen and clen.isdigit() else None
            if total is not None and total > MAX_DOWNLOAD:
                raise self._fail(name, f"announces {total} bytes, above the {MAX_DOWNLOAD}-byte limit")
            meta_data = {"url": self._url(name), "etag": resp.headers.get("ETag") or "",
                         "last_modified": resp.headers.get("Last-Modified") or ""}
            try:
                _write_meta(meta, meta_data)
            except OSError as exc:
                meta.unlink(missing_ok=True)
                raise _local_error(exc, meta) from None
            got = have
            progress = _Progress(name, total) if self.opts.progress else None
            with open(part, mode, buffering=0) as out:  # unbuffered: no write is left for close() to fail
                try:
                    got = _copy(resp, out, got, progress, part)
                except LocalWriteError:
                    part.unlink(missing_ok=True)
                    meta.unlink(missing_ok=True)
                    raise
                except TimeoutError:
                    raise self._fail(name, f"timed out: truncated, no data for {self.opts.receive_timeout:g} s "
                                     f"(ReceiveTimeout) after {got} bytes; will resume") from None
                except http.client.IncompleteRead as exc:
                    raise self._fail(name, f"truncated download: connection closed after "
                                     f"{got + len(exc.partial)} bytes; will resume") from None
                except (OSError, http.client.HTTPException) as exc:
                    raise self._fail(name, f"{_reason(exc)} after {got} bytes") from None
                finally:
                    if progress:
                        progress.done()
            if total is not None and got != total:
                raise self._fail(name, f"truncated download: {got} of {total} bytes; will resume")
        os.replace(part, dest)
        os.replace(meta, done)
        return dest


def _copy(resp: BinaryIO, out: BinaryIO, got: int, progress: _Progress | None, path: Path) -> int:
    while True:
        block = resp.read(CHUNK)
        if not block:
            return got
        _write_all(out, block, path)
        got += len(block)
        if got > MAX_DOWNLOAD:
            raise OSError(f"more than {MAX_DOWNLOAD} bytes")
        if progress:
            progress.update(got)


def _read_exactly(resp: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        block = resp.read(n - len(buf))
        if not block:
            break
        buf += block
    return buf


def _reason(exc: object) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out (ConnectTimeout/ReceiveTimeout)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _read_meta(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_meta(path: Path, data: dict[str, str]) -> None:
    path.write_text(json.dumps(data))


class _Progress:
    """``name: 42% (12.0 of 28.5 MB)`` rewritten in place on a terminal."""

    def __init__(self, name: str, total: int | None) -> None:
        self.name, self.total, self.last = name, total, 0.0

    def update(self, got: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        if self.total:
            sys.stderr.write(f"\r{self.name}: {100 * got // self.total:3d}% ({got / 1e6:.1f} of "
                             f"{self.total / 1e6:.1f} MB)")
        else:
            sys.stderr.write(f"\r{self.name}: {got / 1e6:.1f} MB")
        sys.stderr.flush()

    def done(self) -> None:
        if self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()
