"""Operations on files (guide 6.2.2-6.2.4, 5.3.3-5.3.5): what happens to a file after its verdict.

Which rule applies: ``[scanner.object]`` when the file itself is the detected object,
``[scanner.container]`` when something *inside* it is (6.2.3: "if archived objects inside it
contain viruses, it is treated as a compound one").  Either way the action is applied to the file
on disk — an infected member of an archive acts on the whole archive, as 5.3.1 warns.

Statuses and keys: Infected and CureFailed -> ``OnInfected`` (6.2.2: a failed cure is treated as
infected), Suspicious -> ``OnSuspicion``, Warning -> ``OnWarning``, Corrupted -> ``OnCorrupted``,
Protected -> ``OnProtected``, Error -> ``OnError``; Cured files are only reported (6.2.3).

``exec COMMAND`` runs through ``/bin/sh -c`` because the guide's examples need pipes and ``;``.
The macros are replaced in one pass, each by a single shell-quoted word (``shlex.quote``), so a
file named ``$(touch /tmp/pwned);x`` or holding a newline is passed as data, never run.  The
admin's command must therefore not put the macros inside quotes of its own.  The guide's own
``%FULLPATH%/FILENAME%`` (a missing ``%``) is read as ``%FULLPATH%/%FILENAME%``.

Root acts in directories users can write, so every change goes through ``Pinned``: the file's
directory is opened component by component from ``/`` with ``O_NOFOLLOW``, the file is checked
there to be the very one scanned (same device and inode, still a regular file) and then read,
unlinked, renamed or rewritten relative to that directory descriptor.  A directory swapped for a
link to ``/etc`` between scan and action therefore makes the action fail; it never removes or
rewrites ``/etc/passwd``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.engine.verdict import Status, Verdict
from runtime.fsutil import atomic_write

from .backup import Backup, quarantine_file

EXEC_TIMEOUT = 600.0

STATUS_KEY = {
    Status.INFECTED: "OnInfected",
    Status.CUREFAILED: "OnInfected",
    Status.SUSPICIOUS: "OnSuspicion",
    Status.WARNING: "OnWarning",
    Status.CORRUPTED: "OnCorrupted",
    Status.PROTECTED: "OnProtected",
    Status.ERROR: "OnError",
}

_MACRO = re.compile(r"%(FULLPATH|FILENAME|VIRUSNAME|LIST)%")
_GUIDE_TYPO = re.compile(r"%FULLPATH%/FILENAME%")

Action = tuple[str, str]


def is_container(v: Verdict) -> bool:
    """Whether the finding is inside the file (a member) rather than the file itself."""
    return any(o.path != v.path and o.status is not Status.CLEAN for o in v.objects)


def expand(command: str, path: str, names: list[str], list_file: str = "") -> str:
    """The command with every macro replaced by one shell-quoted word, in a single pass."""
    values = {
        "FULLPATH": os.path.dirname(path) or "/",
        "FILENAME": os.path.basename(path),
        "VIRUSNAME": ", ".join(names),
        "LIST": list_file,
    }
    command = _GUIDE_TYPO.sub("%FULLPATH%/%FILENAME%", command)
    return _MACRO.sub(lambda m: shlex.quote(values[m.group(1)]), command)


@dataclass
class Policy:
    """Everything that decides the fate of a file: the two action tables and the run's mode."""

    object_actions: dict[str, list[Action]] = field(default_factory=dict)
    container_actions: dict[str, list[Action]] = field(default_factory=dict)
    cure: bool = False
    remove_uncured: bool = False  # -i3: "objects which cannot be disinfected are to be deleted"
    backup: Backup | None = None
    quarantine_dir: str = ""
    dry_run: bool = False


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)  # "removed", "moved to X", ...
    errors: list[str] = field(default_factory=list)
    gone: bool = False  # the file is no longer at its path
    cured: bool = False
    removed: bool = False
    moved: bool = False
    quarantined: bool = False


class Changed(OSError):
    """The file on disk is no longer the one that was scanned."""


def open_dir_nofollow(path: str) -> int:
    """A descriptor of directory ``path``, reached without following any symbolic link."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for comp in [c for c in path.split("/") if c]:
            nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


class Pinned:
    """The scanned file, reached through a descriptor of its directory (see the module docstring)."""

    def __init__(self, path: str, st: os.stat_result) -> None:
        self.path, self.st = path, st
        self.name = os.path.basename(path)
        self.dfd = open_dir_nofollow(os.path.dirname(path) or "/")

    def close(self) -> None:
        os.close(self.dfd)

    def __enter__(self) -> Pinned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def same(self) -> bool:
        try:
            now = os.stat(self.name, dir_fd=self.dfd, follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISREG(now.st_mode) and (now.st_dev, now.st_ino) == (self.st.st_dev, self.st.st_ino)

    def check(self) -> None:
        if not self.same():
            raise Changed(errno.ESTALE, "file changed or replaced since it was scanned; left alone")

    def read(self) -> bytes:
        fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.dfd)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if (st.st_dev, st.st_ino) != (self.st.st_dev, self.st.st_ino):
                raise Changed(errno.ESTALE, "file changed or replaced since it was scanned; left alone")
            return fh.read()

    def unlink(self) -> None:
        self.check()
        os.unlink(self.name, dir_fd=self.dfd)

    def rename(self, target: str) -> None:
        self.check()
        os.rename(self.name, target, src_dir_fd=self.dfd)

    def rewrite(self, data: bytes) -> None:
        """``atomic_write`` relative to the pinned directory: temporary file, fsync, rename, with
        the original mode and owner (fsutil.atomic_write takes paths, which could be redirected)."""
        self.check()
        tmp = f".{self.name[:200]}.{os.urandom(6).hex()}.kavscanner.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=self.dfd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if os.geteuid() == 0:
                    os.fchown(fh.fileno(), self.st.st_uid, self.st.st_gid)
                os.fchmod(fh.fileno(), self.st.st_mode & 0o7777)
                os.fsync(fh.fileno())
            os.rename(tmp, self.name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.dfd)
            raise
        os.fsync(self.dfd)


class Executor:
    def __init__(self, policy: Policy, log_error: Callable[[str], None] = lambda m: None) -> None:
        self.p = policy
        self.log_error = log_error

    # -- helpers ------------------------------------------------------------------------------
    def _backup(self, f: Pinned, reason: str, out: Outcome) -> bool:
        if self.p.backup is None:
            return True
        try:
            qid = self.p.backup.save(f.path, f.st, f.read(), reason)
            out.done.append(f"backed up as {qid}")
            return True
        except Exception as exc:  # noqa: BLE001 - no backup, no destructive action
            out.errors.append(f"backup failed ({exc}); file left unchanged")
            return False

    def _remove(self, f: Pinned, reason: str, out: Outcome) -> None:
        if not self._backup(f, reason, out):
            return
        f.unlink()
        out.gone = out.removed = True
        out.done.append("removed")

    @staticmethod
    def _check_target_dir(d: str) -> None:
        """A destination root must not be a link nor belong to someone else (root never trusts
        a directory an ordinary user could have planted, e.g. ``/tmp/infected``)."""
        os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, f"{d} is not a directory")
        if st.st_uid not in (0, os.geteuid()):
            raise OSError(errno.EPERM, f"{d} belongs to uid {st.st_uid}, not to us or root")

    def _move(self, f: Pinned, dest_dir: str, keep_path: bool, out: Outcome) -> None:
        path = f.path
        self._check_target_dir(dest_dir)
        if keep_path:
            target = os.path.join(dest_dir, path.lstrip("/"))
            parent = os.path.dirname(target)
            os.makedirs(parent, mode=0o700, exist_ok=True)
            if os.path.realpath(parent) != os.path.normpath(parent):
                raise OSError(errno.ELOOP, f"{parent} leads through a symbolic link")
        else:
            target = os.path.join(dest_dir, os.path.basename(path))
        base, n = target, 0
        while os.path.lexists(target):
            n += 1
            target = f"{base}.{n}"
        try:
            f.rename(target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            atomic_write(target, f.read(), mode=f.st.st_mode & 0o7777)
            f.unlink()
        out.gone = out.moved = True
        out.done.append(f"moved to {target}")

    def _exec(self, command: str, path: str, v: Verdict, out: Outcome) -> None:
        list_file = ""
        try:
            if "%LIST%" in command:
                fd, list_file = tempfile.mkstemp(prefix="kavscanner-list-", suffix=".txt")
                with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
                    for o in v.objects:
                        fh.write(o.report_line().replace("\n", "\\n") + "\n")
            cmd = expand(command, path, v.names, list_file)
            r = subprocess.run(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(),
                               timeout=EXEC_TIMEOUT, check=False)
            if r.returncode:
                out.errors.append(f"exec exited with {r.returncode}")
            else:
                out.done.append("exec done")
        except subprocess.TimeoutExpired:
            out.errors.append(f"exec did not finish within {EXEC_TIMEOUT:g} s")
        finally:
            if list_file:
                with contextlib.suppress(OSError):
                    os.unlink(list_file)
        if not os.path.lexists(path):
            out.gone = True

    # -- the one entry point ------------------------------------------------------------------
    def apply(self, path: str, st: os.stat_result, v: Verdict) -> Outcome:
        out = Outcome()
        if self.p.dry_run or (v.status is not Status.CURED and v.status not in STATUS_KEY):
            return out
        if v.status is not Status.CURED and not self._has_work(v):
            return out  # report only: no need to reach the file (spares a directory walk per file)
        try:
            f = Pinned(path, st)
        except OSError as exc:
            out.errors.append(f"cannot reach the file without following links: {exc.strerror or exc}")
            return out
        with f:
            if v.status is Status.CURED:
                self._apply_cure(f, v, out)
            else:
                self._apply_rules(f, v, out)
        return out

    def _has_work(self, v: Verdict) -> bool:
        """Whether any rule for this verdict does more than report (or -i3 may remove the file)."""
        if self.p.remove_uncured and v.status in (Status.INFECTED, Status.CUREFAILED):
            return True
        table = self.p.container_actions if is_container(v) else self.p.object_actions
        return any(verb not in ("report", "cure") for verb, _ in table.get(STATUS_KEY[v.status], []))

    def _apply_rules(self, f: Pinned, v: Verdict, out: Outcome) -> None:
        reason = ", ".join(v.names) or v.status.value
        table = self.p.container_actions if is_container(v) else self.p.object_actions
        for verb, arg in table.get(STATUS_KEY[v.status], []):
            if out.gone and verb != "exec":
                continue
            try:
                if verb in ("report", "cure"):
                    continue  # reporting always happens; cure is asked for by Cure=yes / -i
                if verb == "remove":
                    self._remove(f, reason, out)
                elif verb in ("move", "movepath"):
                    self._move(f, arg, verb == "movepath", out)
                elif verb == "quarantine":
                    qdir = arg or self.p.quarantine_dir
                    qid = quarantine_file(qdir, f.path, f.st, f.read(), reason)
                    f.unlink()
                    out.gone = out.quarantined = True
                    out.done.append(f"quarantined as {qid} in {qdir}")
                elif verb == "exec":
                    self._exec(arg, f.path, v, out)
            except OSError as exc:
                out.errors.append(f"{verb}: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        if self.p.remove_uncured and not out.gone and v.status in (Status.INFECTED, Status.CUREFAILED):
            try:
                self._remove(f, reason, out)
            except OSError as exc:
                out.errors.append(f"remove: {exc.strerror or exc}")

    def _apply_cure(self, f: Pinned, v: Verdict, out: Outcome) -> None:
        try:
            f.check()
            if not self._backup(f, ", ".join(v.names) or "cured", out):
                return
            if v.deleted:
                f.unlink()
                out.gone = out.removed = True
                out.done.append("removed (cure is deletion)")
            elif v.cured is not None:
                f.rewrite(v.cured)
                out.cured = True
                out.done.append("disinfected")
        except OSError as exc:
            out.errors.append(f"cure: {exc.strerror or exc}")
