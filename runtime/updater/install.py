"""Putting a new database set in place without ever breaking aveserver (guide 5.1, 4.2).

Order of events, each step refusing to go on if the one before failed:
1. everything is downloaded and verified in a staging directory inside BasesPath's own
   ``.keepup2date/`` (same filesystem, so the final step is a rename, and a full disk fails there,
   before anything in BasesPath changed);
2. the staging directory, holding the complete future set, is loaded in a child process by the
   loader aveserver uses (``Engine.load``); a set that fails or has zero records is refused.  The
   child also warms aveserver's compiled-database cache, so the reload that follows is quick;
3. the current containers are hard-linked into BackUpPath (``keepup2date --rollback`` swaps them
   back), then each new file is renamed over its old one; aveserver is told to reload only after.

A lock (``flock`` on ``.keepup2date/lock``) keeps a cron run and a manual run apart, and stale
staging directories and partial downloads older than a day are swept at start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runtime.engine.cvd import CONTAINER_SUFFIXES, ContainerError, parse_header
from runtime.fsutil import atomic_write, fsync_dir

DATABASES = ("main", "daily", "bytecode")
REQUIRED = ("main", "daily")
STATE_DIR = ".keepup2date"
PARTIAL_MAX_AGE = 24 * 3600
LOAD_TEST_TIMEOUT = 1800


#: errors of this host's storage: a full disk, a quota, a read-only or failing filesystem
LOCAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def disk_error(exc: OSError, doing: str) -> str:
    """``cannot write FILE: reason`` for a failed write (a copy's destination is its filename2)."""
    target = exc.filename2 or exc.filename
    reason = exc.strerror or str(exc)
    return f"{reason} while {doing} {target}" if target else f"{reason} while {doing}"


def write_new(path: Path, data: bytes) -> None:
    """Write a staged file; a failure names it (a write error alone carries no file name)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


class InstallError(Exception):
    """The new set was refused or could not be put in place; the installed set is unchanged."""


class Locked(Exception):
    pass


@dataclass
class Installed:
    version: int
    path: Path


def state_dir(bases: Path) -> Path:
    d = bases / STATE_DIR
    d.mkdir(mode=0o700, exist_ok=True)
    return d


@contextlib.contextmanager
def run_lock(bases: Path) -> Iterator[None]:
    """One keepup2date at a time per BasesPath (cron overlapping a manual run waits for nobody)."""
    fd = os.open(state_dir(bases) / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(f"{bases}: another keepup2date is running (lock {bases / STATE_DIR / 'lock'})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def sweep(bases: Path, now: float | None = None) -> list[str]:
    """Remove what an interrupted run left: staging directories, old partial downloads, temp files."""
    now = now or time.time()
    removed = []
    state = state_dir(bases)
    for entry in state.iterdir():
        if entry.name.startswith("staging") and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        elif entry.name.startswith("partial") and entry.is_dir():
            for part in entry.iterdir():
                if now - part.lstat().st_mtime > PARTIAL_MAX_AGE:
                    part.unlink(missing_ok=True)
                    removed.append(f"{entry.name}/{part.name}")
    for entry in bases.iterdir():  # runtime.fsutil.atomic_write's temp files
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and now - entry.lstat().st_mtime > 3600:
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def new_staging(bases: Path) -> Path:
    d = state_dir(bases) / f"staging.{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o700)
    return d


def partial_dir(bases: Path) -> Path:
    d = state_dir(bases) / "partial"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def installed(directory: Path) -> dict[str, Installed]:
    """The version of each managed container (the higher of X.cvd and X.cld, as the loader picks)."""
    out: dict[str, Installed] = {}
    if not directory.is_dir():
        return out
    for db in DATABASES:
        for suffix in CONTAINER_SUFFIXES:
            path = directory / f"{db}{suffix}"
            try:
                with open(path, "rb", opener=_nofollow) as fh:
                    version = parse_header(fh.read(512), str(path)).version
            except (OSError, ContainerError):
                continue
            if db not in out or version > out[db].version:
                out[db] = Installed(version, path)
    return out


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def database_files(directory: Path) -> list[Path]:
    """Files of a database directory (everything the loader may read; hidden entries excluded)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if not p.name.startswith(".") and p.is_file()
                  and not p.is_symlink())


def managed(name: str) -> bool:
    stem, dot, suffix = name.partition(".")
    return stem in DATABASES and f".{suffix}" in CONTAINER_SUFFIXES


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def fill_staging(staging: Path, bases: Path, replaced: set[str]) -> None:
    """Complete the staging set: every current file the update does not replace (hard links)."""
    stems = {n.partition(".")[0] for n in replaced}
    for f in database_files(bases):
        if f.name in replaced or (managed(f.name) and f.name.partition(".")[0] in stems):
            continue
        if not (staging / f.name).exists():
            _link_or_copy(f, staging / f.name)


@dataclass
class LoadResult:
    records: int
    seconds: float
    max_rss_kb: int


def load_test(directory: Path, key_path: str, timeout: float = LOAD_TEST_TIMEOUT) -> LoadResult:
    """Load ``directory`` in a child process with aveserver's loader; raise InstallError if refused."""
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=pkg_root + (os.pathsep + os.environ["PYTHONPATH"]
                                                  if os.environ.get("PYTHONPATH") else ""))
    cmd = [sys.executable, "-m", "runtime.updater.loadtest", str(directory), key_path]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise InstallError(f"{directory}: load test did not finish in {timeout:g} s") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise InstallError(f"load test refused the new set: {reason}")
    info = json.loads(lines[-1])
    if info["records"] <= 0:
        raise InstallError("load test refused the new set: it loads zero signatures")
    return LoadResult(info["records"], info["seconds"], info["max_rss_kb"])


def switch(staging: Path, bases: Path, backup: Path, names: list[str], remove: list[str] = ()) -> None:
    """Back up the current containers, then rename each staged file over its counterpart."""
    keep = backup.with_name(backup.name + ".new")
    shutil.rmtree(keep, ignore_errors=True)
    try:
        keep.mkdir(mode=0o755, parents=True)
        for f in database_files(bases):
            if managed(f.name):
                _link_or_copy(f, keep / f.name)
        fsync_dir(keep)
    except OSError as exc:  # BackUpPath on a full filesystem: nothing switched, nothing left there
        shutil.rmtree(keep, ignore_errors=True)
        target = exc.filename2 or exc.filename or str(keep)
        raise OSError(exc.errno, f"{exc.strerror or exc} while keeping the previous set in {backup}; "
                      "nothing switched", target) from None
    old = backup.with_name(backup.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if backup.exists():
        os.rename(backup, old)
    os.rename(keep, backup)
    shutil.rmtree(old, ignore_errors=True)
    for name in names:
        os.replace(staging / name, bases / name)
        stem, _, suffix = name.partition(".")
        other = bases / f"{stem}{'.cld' if suffix == 'cvd' else '.cvd'}"
        other.unlink(missing_ok=True)  # the loader would pick the higher version; leave no doubt
    for name in remove:
        (bases / name).unlink(missing_ok=True)
    fsync_dir(bases)


def save_json(path: Path, data: dict, log: object) -> None:
    """Persist keepup2date's memory (cool-downs, validators); a full disk costs that memory only.

    Never raises: losing it means one more request to a source next time, while raising here
    (often from a ``finally``) would replace the error the admin needs to see.
    """
    try:
        atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode(), mode=0o600)
    except OSError as exc:
        log.warning(f"{path}: not saved ({exc.strerror or exc}); the next run starts without it")  # type: ignore[attr-defined]


def load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
