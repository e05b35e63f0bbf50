"""Edits every integration shares: the kluser account and filter group, our directories, and
the kav4mailservers.conf keys that must agree with what was set in the MTA (guide 4.4.5, 6.1.1).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kavsetup.detect.model import System
from kavsetup.integrate.edits import AccountLine, EnsureDir, IniValues
from kavsetup.integrate.edits import Edit as Edit
from kavsetup.integrate.files import Root
from kavsetup.integrate.settings import IntegrationSettings
from kavsetup.mta import CompileError


def free_id(used: frozenset[int] | set[int], lo: int = 100, hi: int = 999) -> int:
    """First free system id, as adduser --system picks them."""
    for i in range(lo, hi + 1):
        if i not in used:
            return i
    raise CompileError(f"no free system id between {lo} and {hi}")


def choose_ports(s: IntegrationSettings) -> tuple[int, int]:
    """Filter and reinjection ports, moved up together past any taken port."""
    taken = set(s.taken_ports)
    f = s.filter_port
    while f in taken:
        f += 1
    r = s.reinject_port if s.reinject_port != f else f + 1
    while r in taken or r == f:
        r += 1
    return f, r


def parent_dirs(path: str) -> list[Edit]:
    """EnsureDir(only_create) for each ancestor, so files can be written into a bare root and
    the directories we had to make are removed again on uninstall."""
    p = PurePosixPath(path)
    return [EnsureDir(str(d), 0o755, 0, 0, only_create=True)
            for d in reversed(p.parents) if str(d) != "/"]


def accounts(system: System, s: IntegrationSettings, home: str) -> tuple[list[Edit], int, int]:
    """The ``kluser`` user in the ``filter`` group (guide 4.4.3 steps 4-5), only if missing."""
    edits: list[Edit] = []
    users = system.users
    group = users.group(s.group)
    user = users.user(s.user)
    gid = group.gid if group else free_id(users.gids)
    if group is None:
        edits.append(AccountLine("/etc/group", s.group, f"{s.group}:x:{gid}:"))
        edits.append(AccountLine("/etc/gshadow", s.group, f"{s.group}:!::"))
    if user is None:
        uid = free_id(users.uids)
        gecos = "kav4mailservers mail filter"
        edits.append(AccountLine("/etc/passwd", s.user, f"{s.user}:x:{uid}:{gid}:{gecos}:{home}:{s.nologin}"))
        edits.append(AccountLine("/etc/shadow", s.user, ":".join([s.user, "!*", "", "", "", "", "", "", ""])))
    else:
        uid = user.uid
    return edits, uid, gid


def ere_escape(text: str) -> str:
    """POSIX ERE literal (guide 6.1.1 masks are POSIX regex)."""
    return re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", text)


def admin_masks(addresses: tuple[str, ...]) -> str:
    """Recipients of ``[smtpscan.group:kavadministrators]``: postmaster and every address it
    is an alias of (guide 6.1.1).  A bare local name matches that user at any domain.

    Anchored (``^...$``, issue 11): masks are matched like regexec(3), a search, and this group
    receives viruses unchanged, so an unanchored ``postmaster@.*`` or ``root@.*`` would also take in
    ``malice@``/``groot@`` and ``alice@example.com.evil.org``."""
    masks: list[str] = ["^postmaster@.*$"]
    for a in addresses:
        a = a.strip()
        if not a:
            continue
        m = f"^{ere_escape(a)}$" if "@" in a else f"^{ere_escape(a)}@.*$"
        if m not in masks:
            masks.append(m)
    return ",".join(masks)


def conf_edits(s: IntegrationSettings, forward: str, listen: str, gid: int, mode: int = 0o640,
               before_queue: bool = False) -> list[Edit]:
    """kav4mailservers.conf keys that must match the MTA side (guide 4.4.5).  Created 0640
    root:<filter group> so only the filter reads it, unless the caller says otherwise.
    ``before_queue``: the MTA hands mail over before queueing it (Postfix's proxy form), so a
    5xx reaches the sending client and ``RecipientAction=reject`` is allowed (BeforeQueue)."""
    values: list[tuple[str, str, str]] = [
        ("smtpscan.general", "Protocol", s.protocol),
        ("smtpscan.general", "ForwardMailer", forward),
    ]
    if listen:
        values.append(("smtpscan.general", "ListenAddress", listen))
    if before_queue:
        values.append(("smtpscan.general", "BeforeQueue", "yes"))
    if s.notify_from:
        values.append(("smtpscan.general", "NotifyFromAddress", s.notify_from))
    if s.xforward:
        values.append(("smtpscan.general", "EHLOsupportXFORWARD", "yes"))
        values.append(("smtpscan.general", "EHLOattrsXFORWARD", "NAME ADDR PROTO HELO"))
    if s.admin_address:
        values.append(("smtpscan.group:default", "AdminAddress", s.admin_address))
        values.append(("smtpscan.group:default", "AdminNotify", "yes"))
    values.append(("smtpscan.group:kavadministrators", "Recipients", admin_masks(s.postmasters)))
    values.extend(setup_values(s))
    default = s.conf_default_text or (
        "# kav4mailservers.conf: written by kavsetup install (guide 4.4.5).\n"
        "# Keys not listed here take their built-in defaults.\n")
    return [*parent_dirs(s.conf_file), IniValues(s.conf_file, tuple(values), default, mode, 0, gid)]


def setup_values(s: IntegrationSettings) -> list[tuple[str, str, str]]:
    """The setup dialogue's answers that live in kav4mailservers.conf (guide 3.3, 5.1.1, 5.1.5,
    5.4.1); an empty answer leaves the key at its default."""
    values: list[tuple[str, str, str]] = []
    if s.domains:
        values.append(("smtpscan.license", "LicenseDomains", s.domains))
    if s.update_source:
        values.append(("updater.options", "UpdateServerUrl", s.update_source))
        values.append(("updater.options", "UseUpdateServerUrl", "yes"))
    if s.proxy:
        values.append(("updater.options", "ProxyAddress", s.proxy))
        values.append(("updater.options", "UseProxy", "yes"))
    return values


def read_postmasters(lines: list[str]) -> tuple[str, ...]:
    """Targets of ``postmaster:`` in an /etc/aliases text (continuations and commas handled)."""
    joined: list[str] = []
    for line in lines:
        if line.startswith((" ", "\t")) and joined:
            joined[-1] += " " + line.strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            joined.append(line.strip())
    for entry in joined:
        name, sep, rest = entry.partition(":")
        if sep and name.strip().lower() == "postmaster":
            return tuple(t.strip().strip('"') for t in rest.split(",") if t.strip()
                         and not t.strip().startswith(("|", "/", ":include:")))
    return ()


# -- the running MTA after a change (issue 11 item 7) ---------------------------------------------
# Each module decides whether its MTA is running and what reloads it and requeues the mail that was
# held for our transport; these helpers only run the commands (argv lists, never a shell) and word
# the notes, the same way for every MTA.

def read_pid(root: Root, pidfile: str) -> int | None:
    """The live process the first number in ``pidfile`` names (only on the live system); a zombie
    (exited, not yet reaped by its parent) is not alive."""
    if not root.is_live:
        return None
    try:
        pid = int(root.host(pidfile).read_text().split()[0])
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return None if state in ("Z", "X") else pid


def pid_alive(root: Root, pidfile: str) -> bool:
    """Whether the first number in ``pidfile`` names a live process (only on the live system)."""
    return read_pid(root, pidfile) is not None


def listening_instance_link(root: Root, pidfile: str, program: str, fix: str) -> tuple[bool, str, str]:
    """kavsetup doctor's ``mta`` link for an MTA integrated as a listening instance (Exim,
    Sendmail): its pid file names a live ``program`` process; otherwise "MTA not running" and
    ``fix``."""
    try:
        pid = int(root.host(pidfile).read_text().split()[0])
        with open(f"/proc/{pid}/comm") as fh:
            comm = fh.read().strip()
        ok = comm.startswith(program)
        detail = f"the listening instance runs as pid {pid}" if ok else f"{pidfile} names {comm!r}"
    except (OSError, ValueError, IndexError):
        ok, detail = False, f"no listening instance ({pidfile} missing or stale)"
    return ok, detail if ok else f"MTA not running: {detail}", "" if ok else fix


def run_commands(commands: list[list[str]], what: str) -> list[str]:
    """Run each command; notes saying what was done, or exactly what failed and what to run."""
    notes: list[str] = []
    for argv in commands:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"{what}: `{' '.join(argv)}` could not run ({exc}); run it yourself")
            continue
        if r.returncode != 0:
            why = (r.stderr or r.stdout).strip().splitlines()
            notes.append(f"{what}: `{' '.join(argv)}` failed ({why[-1] if why else r.returncode}); run it yourself")
        else:
            notes.append(f"{what}: ran `{' '.join(argv)}`")
    return notes


def not_running(what: str, commands: list[list[str]]) -> list[str]:
    return [f"{what} is not running here: after starting it, run " + "; ".join(f"`{' '.join(c)}`" for c in commands)]


# -- mail held by a listening instance of ours (issue 11 item 7) ------------------------------------
# Exim and Sendmail are integrated as two instances: the listening one keeps its own queue, where a
# message waits while it cannot be scanned.  Before uninstall removes that instance, its queue goes
# back into the delivering (the MTA's own) queue, so nothing is stranded in a spool no daemon reads.
# The modules say which files make up a message; moving them is done here, the same way for both.

def stop_daemon(root: Root, pidfile: str, what: str, timeout: float = 20.0) -> list[str]:
    """SIGTERM the daemon ``pidfile`` names and wait until it is gone, so it neither takes more mail
    into the queue being handed back nor touches a message while it moves. Notes."""
    pid = read_pid(root, pidfile)
    if pid is None:
        return []
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError as exc:
        return [f"{what} (pid {pid}) could not be stopped: {exc}; stop it yourself"]
    deadline = time.monotonic() + timeout
    while read_pid(root, pidfile) == pid and time.monotonic() < deadline:
        time.sleep(0.1)
    if read_pid(root, pidfile) == pid:
        return [f"{what} (pid {pid}) did not stop within {timeout:.0f}s; stop it yourself"]
    return [f"stopped {what} (pid {pid})"]


@dataclass(frozen=True)
class HeldMessage:
    """One message in a listening instance's queue: ``files`` are (source, destination) pairs moved
    in order, the one that makes the MTA see the message (Exim's -H, Sendmail's qf) LAST; ``lock``
    is the file the MTA locks while it works on the message. Files other than ``lock`` and the last
    are optional: a delivery attempt that ends while we wait for the lock removes its journal."""

    ident: str
    lock: Path
    files: tuple[tuple[Path, Path], ...]


@contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """Whether we hold ``path`` the way an MTA locks a queue file (fcntl and flock, both tried: a
    delivery in progress holds one of them). O_NOFOLLOW: the spool is the MTA user's to write."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _move(src: Path, dst: Path) -> None:
    """Move one queue file without ever replacing one (FileExistsError): a hard link where both
    queues share a file system, else a copy (owner, mode, fsync) linked into place."""
    st = os.lstat(src)
    if not os.path.isfile(src) or os.path.islink(src):
        raise OSError(errno.EINVAL, f"{src} is not a regular file")
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(f".{dst.name}.kavtmp")
        with open(os.open(src, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fin, \
                open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, st.st_mode & 0o7777),
                     "wb") as fout:
            shutil.copyfileobj(fin, fout)
            fout.flush()
            os.fchown(fout.fileno(), st.st_uid, st.st_gid)
            os.fchmod(fout.fileno(), st.st_mode & 0o7777)
            os.fsync(fout.fileno())
        try:
            os.link(tmp, dst)
        finally:
            tmp.unlink()
    src.unlink()


def ensure_dir_like(path: Path, template: Path) -> None:
    """Create ``path`` (a queue subdirectory the MTA would create on demand) with ``template``'s
    owner and mode. Set through a descriptor opened O_NOFOLLOW: the queue is the MTA user's to
    write, and a symlink swapped in after mkdir must not take root's chown elsewhere."""
    if path.is_dir():
        return
    st = os.stat(template)
    path.mkdir(mode=0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, st.st_mode & 0o7777)
    finally:
        os.close(fd)


def hand_back(messages: list[HeldMessage], what: str, into: str, wait: float = 10.0) -> list[str]:
    """Move each held message into the delivering queue (``into``, for the notes). A message still
    locked (a delivery attempt finishing) is retried for ``wait`` seconds, then left with a note;
    one whose name is taken in the target queue is never overwritten. Notes."""
    notes: list[str] = []
    moved = 0
    pending = list(messages)
    deadline = time.monotonic() + wait
    while pending:
        busy: list[HeldMessage] = []
        for m in pending:
            if not m.lock.exists():
                continue  # delivered (or bounced) meanwhile: nothing held any more
            with _locked(m.lock) as ours:
                if not ours:
                    busy.append(m)
                    continue
                if not m.lock.exists() or not m.files[-1][0].exists():
                    continue  # delivered (or bounced) by the attempt that held the lock: nothing held
                files = [(src, dst) for src, dst in m.files if src.exists()]
                if any(dst.exists() for _src, dst in files):
                    notes.append(f"{what}: message {m.ident} also exists in {into}; left in {m.lock.parent}")
                    continue
                try:
                    for src, dst in files:
                        ensure_dir_like(dst.parent, Path(into))
                        _move(src, dst)
                except OSError as exc:
                    notes.append(f"{what}: message {m.ident} could not be moved to {into} ({exc}); "
                                 f"its files are in {m.lock.parent} and {into}")
                    continue
                moved += 1
        if not busy or time.monotonic() >= deadline:
            notes += [f"{what}: message {m.ident} is locked (being delivered); left in {m.lock.parent}"
                      for m in busy]
            break
        pending = busy
        time.sleep(0.5)
    if moved:
        notes.append(f"{what}: moved {moved} message(s) held for scanning into {into}; they are delivered "
                     "unscanned now that the scanner is removed")
    return notes
