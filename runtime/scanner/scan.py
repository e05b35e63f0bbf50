"""Scanning one file, and many in parallel (guide 5.3, 6.3).

A file is opened with ``O_NOFOLLOW|O_NONBLOCK`` and checked with ``fstat`` to be a regular file
*after* opening: between the walk and the open a name can be replaced by a FIFO (``open`` would
block forever without ``O_NONBLOCK``) or a link to ``/etc/shadow`` (``O_NOFOLLOW`` refuses it).  The
condition recorded for iChecker is the ``fstat`` taken before reading, so a file that changes
while it is read is scanned again next time.

Parallelism, two ways (issue 14: "whichever measures faster"; bench/README.md has the figures):

- in-process: worker processes forked after the engine is loaded share its compiled database
  copy-on-write (the same model as aveserver's pre-forked workers); paths go out and results come
  back in batches (``chunksize``), not one round trip per file;
- through a running aveserver: each file is opened here (with this process's access, O_NOFOLLOW,
  fstat) and its descriptor passed with ``AVE/1 SCANFD``, which answers the whole verdict (member
  list included, so object vs container rules, ``%LIST%`` and the 6.8.1 extended format work the
  same).  kavscanner then never loads the engine itself.  A file aveserver refuses (larger than its
  StreamMaxLength), a name its protocol line cannot carry, or an aveserver gone mid-run is marked
  ``retry`` and scanned in-process afterwards: a file is never left unscanned.

Each worker checks the load average before every file (6.3.2) and waits while it is above
``MaxLoadAvg``.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import load

if TYPE_CHECKING:  # the engine (Hyperscan, unpackers) is imported only when a file must be scanned
    from runtime.engine.client import AveClient
    from runtime.engine.engine import Engine
    from runtime.engine.verdict import Verdict

READ_CHUNK = 1 << 20
CHUNK = 16  # paths per round trip to an in-process worker


@dataclass
class Result:
    path: str
    st: os.stat_result | None = None
    verdict: Verdict | None = None
    error: str = ""  # could not be read: the reason
    skipped: str = ""  # not a regular file any more when opened: what it was
    paused: float = 0.0  # seconds waited for the load average
    retry: bool = False  # aveserver could not scan it: scan it in-process


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading only if it is (still) a regular file; never follows a final link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(0, "not a regular file")
        return fd, st
    except BaseException:
        os.close(fd)
        raise


def _kind(path: str) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "special"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special"


def _open(path: str, max_load: float) -> tuple[int, os.stat_result, float] | Result:
    """The file opened for scanning, or the Result that says why it is not scanned."""
    paused = load.wait_below(max_load) if max_load else 0.0
    try:
        fd, st = open_regular(path)
    except IsADirectoryError:
        return Result(path, skipped=_kind(path), paused=paused)
    except OSError as exc:
        if exc.errno in (getattr(os, "ELOOP", 40), getattr(os, "EMLINK", 31)):
            return Result(path, skipped="link", paused=paused)
        return Result(path, error=exc.strerror or str(exc), paused=paused)
    return fd, st, paused


def scan_file(engine: Engine, path: str, cure: bool, max_load: float = 0.0,
              skip_kinds: frozenset[str] = frozenset()) -> Result:
    opened = _open(path, max_load)
    if isinstance(opened, Result):
        return opened
    fd, st, paused = opened
    try:
        with os.fdopen(fd, "rb", buffering=0) as fh:
            chunks = []
            while True:
                b = fh.read(READ_CHUNK)
                if not b:
                    break
                chunks.append(b)
        data = b"".join(chunks)
    except OSError as exc:
        return Result(path, st, error=exc.strerror or str(exc), paused=paused)
    v = engine.scan(data, path, cure=cure, skip_kinds=skip_kinds)
    return Result(path, st, v, paused=paused)


# -- parallel -------------------------------------------------------------------------------------
_ENGINE: Engine | None = None
_CURE = False
_MAX_LOAD = 0.0
_SKIP: frozenset[str] = frozenset()


def _work(path: str) -> Result:
    assert _ENGINE is not None
    return scan_file(_ENGINE, path, _CURE, _MAX_LOAD, _SKIP)


def scan_many(engine: Engine, paths: Iterable[str], cure: bool, workers: int,
              max_load: float = 0.0, skip_kinds: frozenset[str] = frozenset()) -> Iterator[Result]:
    """Results in completion order; ``workers`` <= 1 scans in this process."""
    global _ENGINE, _CURE, _MAX_LOAD, _SKIP
    if workers <= 1:
        for p in paths:
            yield scan_file(engine, p, cure, max_load, skip_kinds)
        return
    _ENGINE, _CURE, _MAX_LOAD, _SKIP = engine, cure, max_load, skip_kinds
    import multiprocessing  # here, not at the top: a run over an unchanged tree never forks

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        try:
            yield from pool.imap_unordered(_work, paths, chunksize=CHUNK)
        finally:
            pool.terminate()


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# -- through aveserver (AVE/1 SCANFD) -----------------------------------------------------------
def aveserver_client(socket_path: str) -> AveClient | None:
    """A client of the aveserver at ``socket_path`` if one answers PING, else None."""
    from runtime.engine.client import AveClient, AveServerUnavailable

    c = AveClient(socket_path, timeout=600.0)
    try:
        if c.ping():
            return c
    except (AveServerUnavailable, OSError):
        pass
    c.close()
    return None


def scan_fd_file(client: AveClient, path: str, cure: bool, max_load: float = 0.0) -> Result:
    from runtime.engine.client import AveServerError, AveServerUnavailable

    opened = _open(path, max_load)
    if isinstance(opened, Result):
        return opened
    fd, st, paused = opened
    try:
        path.encode()  # the request line carries the name as UTF-8; anything else is scanned in-process
        v = client.scan_fd(fd, path, cure=cure)
    except (UnicodeEncodeError, AveServerError, AveServerUnavailable):
        return Result(path, st, retry=True, paused=paused)
    finally:
        os.close(fd)
    return Result(path, st, v, paused=paused)


def scan_via_aveserver(socket_path: str, paths: Iterable[str], cure: bool, workers: int,
                       max_load: float = 0.0) -> Iterator[Result]:
    """Results in completion order, ``2 x workers`` connections kept busy (one in flight each,
    another being prepared), so aveserver's workers never wait for this process."""
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    local = threading.local()
    clients: list[AveClient] = []
    lock = threading.Lock()

    def one(p: str) -> Result:
        c = getattr(local, "client", None)
        if c is None:
            from runtime.engine.client import AveClient

            c = local.client = AveClient(socket_path, timeout=600.0)
            with lock:
                clients.append(c)
        return scan_fd_file(c, p, cure, max_load)

    n = max(1, workers) * 2
    it = iter(paths)
    with ThreadPoolExecutor(n) as ex:
        running: set[Future[Result]] = set()
        try:
            for p in it:
                running.add(ex.submit(one, p))
                if len(running) >= n * 4:  # bounded: the walk never runs far ahead of the scan
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for f in done:
                        yield f.result()
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            for f in running:
                f.cancel()
            for c in clients:
                c.close()
