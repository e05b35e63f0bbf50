"""POP3 mail from external mailboxes (guide 6.5): fetchmail collects it and hands it to the local
SMTP server, so it passes the anti-virus filter like any other mail.

What ``kavsetup pop3 add`` writes, per local user:

* ``~user/.fetchmailrc`` — one block of ours (between ``# kav4mailservers: begin``/``end`` lines,
  so the user's own lines are left alone) holding the guide's globals (``set postmaster``,
  ``set bouncemail``, ``set no spambounce``, ``set properties ""``) and one ``poll`` line per
  external mailbox.  Mode 0600, owned by the user (fetchmail refuses anything else).
* ``/etc/cron.d/kav4mailservers-pop3`` — one line per local user running ``fetchmail`` as that
  user every N minutes (guide 6.5 step 2; a cron.d line instead of the user's crontab, so root
  never has to edit a file in the user's spool and removal is one line).

Why not the guide's script: it echoes the password between single quotes, so a password with a
quote or a newline writes fetchmail syntax of the caller's choosing (``poll evil ...``).  Here
every value is a double-quoted fetchmail string in which each byte outside a small safe set is a
``\\xHH`` escape (fetchmail's rcfile lexer decodes them), so no value can end its string or its
line.  Root writes into a directory the user controls: the home is opened without following a
link, the file is read and replaced through that directory descriptor with ``O_NOFOLLOW``/
``O_EXCL`` and a rename, so a planted symlink is replaced, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from kavsetup.detect.rootfs import RootFS
from kavsetup.detect.users import find_user
from runtime.fsutil import atomic_write

RCFILE = ".fetchmailrc"
CRON_FILE = "/etc/cron.d/kav4mailservers-pop3"
BEGIN = "# kav4mailservers: begin (guide 6.5; edited by `kavsetup pop3`, keep these marker lines)"
END = "# kav4mailservers: end"
#: Bytes written as they are inside a fetchmail string; everything else becomes ``\\xHH``.
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,_-+=@:/%!#*~^")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$")
_LOCAL = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
MAX_VALUE = 512
DEFAULT_EVERY = 10


class Pop3Error(Exception):
    """The request cannot be done; one line for the admin naming the file or value."""


def quote(value: str, what: str) -> str:
    """``value`` as a fetchmail double-quoted string that cannot inject syntax."""
    data = value.encode("utf-8")
    if not data:
        raise Pop3Error(f"{what}: must not be empty")
    if b"\0" in data:
        raise Pop3Error(f"{what}: must not contain a NUL byte (fetchmail cannot represent it)")
    if len(data) > MAX_VALUE:
        raise Pop3Error(f"{what}: longer than {MAX_VALUE} bytes")
    return '"' + "".join(chr(b) if b in _SAFE else f"\\x{b:02x}" for b in data) + '"'


@dataclass(frozen=True)
class Mailbox:
    host: str
    user: str
    password: str
    local: str
    #: False writes ``sslproto ""``: plain POP3, for a trusted network only (``--no-tls``); by
    #: default fetchmail upgrades with STLS when offered and checks the certificate.
    tls: bool = True

    def key(self) -> str:
        """The start of its poll line: host and remote login identify an entry."""
        return f"poll {quote(self.host, 'HOST')} with proto POP3 user {quote(self.user, 'USER')} there"

    def line(self) -> str:
        tls = "" if self.tls else ' sslproto ""'
        return (f"{self.key()} with password {quote(self.password, 'PASSWORD')} "
                f"is {quote(self.local, 'LOCALUSER')} here{tls}")


def globals_for(local: str) -> list[str]:
    """The guide's globals (6.5): errors go to the local user, bounces to the sender, spam
    bounces never, and no properties."""
    return [f"set postmaster {quote(local, 'LOCALUSER')}", "set bouncemail", "set no spambounce",
            'set properties ""']


def check_names(host: str, local: str) -> None:
    if not _HOST.match(host):
        raise Pop3Error(f"HOST {host!r}: not a host name or [address]")
    if not _LOCAL.match(local):
        raise Pop3Error(f"LOCALUSER {local!r}: not a local user name")


# -- the user's directory, without following links -------------------------------------------
@dataclass
class Home:
    """The local user's home directory, opened once; every file operation goes through ``fd``."""

    path: Path
    fd: int
    uid: int
    gid: int

    def close(self) -> None:
        os.close(self.fd)


def open_home(root: Path, local: str) -> Home:
    fs = RootFS(root)
    user = find_user(fs, local)
    if user is None:
        raise Pop3Error(f"{fs.host('/etc/passwd')}: no user {local!r}")
    if not user.home.startswith("/") or user.home == "/":
        raise Pop3Error(f"{fs.host('/etc/passwd')}: user {local}: home {user.home!r} is not a home directory")
    home = fs.host(user.home)
    try:
        parent = os.open(home.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise Pop3Error(f"{home.parent}: {e.strerror}") from None
    try:
        pst = os.fstat(parent)
        if pst.st_uid != 0 or pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX:
            raise Pop3Error(f"{home.parent}: writable by others than root; refusing to write below it")
        try:
            fd = os.open(home.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError as e:
            why = "is a symbolic link; refusing to follow it" if e.errno in (errno.ELOOP, errno.ENOTDIR) else e.strerror
            raise Pop3Error(f"{home}: {why}") from None
    finally:
        os.close(parent)
    st = os.fstat(fd)
    if st.st_uid not in (0, user.uid):
        os.close(fd)
        raise Pop3Error(f"{home}: owned by uid {st.st_uid}, not by {local} or root; refusing")
    return Home(home, fd, user.uid, user.gid)


def read_rc(home: Home) -> str:
    try:
        fd = os.open(RCFILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=home.fd)
    except FileNotFoundError:
        return ""
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Pop3Error(f"{home.path / RCFILE}: is a symbolic link; refusing to follow it") from None
        raise Pop3Error(f"{home.path / RCFILE}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Pop3Error(f"{home.path / RCFILE}: not a regular file; refusing")
        if st.st_uid not in (0, home.uid):
            raise Pop3Error(f"{home.path / RCFILE}: owned by uid {st.st_uid}, not by the user; refusing")
        data = fh.read(1 << 20)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Pop3Error(f"{home.path / RCFILE}: not UTF-8 text; refusing to edit it") from None


def write_rc(home: Home, text: str) -> None:
    """Replace (or, for empty ``text``, remove) the file: a fresh 0600 file owned by the user,
    created with O_EXCL|O_NOFOLLOW in the opened directory and renamed over the entry."""
    if not text:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(RCFILE, dir_fd=home.fd)
        os.fsync(home.fd)
        return
    tmp = f".{RCFILE}.kav4ms.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=home.fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchown(fh.fileno(), home.uid, home.gid)
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, RCFILE, src_dir_fd=home.fd, dst_dir_fd=home.fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=home.fd)
        raise
    os.fsync(home.fd)


# -- the block of ours in .fetchmailrc -----------------------------------------------------
def split_block(text: str, where: str) -> tuple[list[str], list[str], list[str]]:
    """(lines before our block, our block's poll lines, lines after it)."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln == BEGIN]
    ends = [i for i, ln in enumerate(lines) if ln == END]
    if not starts and not ends:
        return lines, [], []
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise Pop3Error(f"{where}: the kav4mailservers marker lines are damaged; fix or remove them by hand")
    body = lines[starts[0] + 1:ends[0]]
    return lines[:starts[0]], [ln for ln in body if ln.startswith("poll ")], lines[ends[0] + 1:]


def join_block(before: list[str], polls: list[str], after: list[str], local: str) -> str:
    block = [BEGIN, *globals_for(local), *polls, END] if polls else []
    lines = before + block + after
    return "\n".join(lines) + "\n" if any(ln.strip() for ln in lines) else ""


def add_entry(text: str, box: Mailbox, where: str) -> str:
    before, polls, after = split_block(text, where)
    polls = [p for p in polls if not p.startswith(box.key() + " ")] + [box.line()]
    return join_block(before, polls, after, box.local)


def remove_entry(text: str, host: str, user: str, local: str, where: str) -> tuple[str, bool]:
    before, polls, after = split_block(text, where)
    key = Mailbox(host, user, "x", local).key() + " "
    kept = [p for p in polls if not p.startswith(key)]
    return join_block(before, kept, after, local), len(kept) != len(polls)


def has_entries(text: str, where: str) -> bool:
    return bool(split_block(text, where)[1])


# -- the cron entry ---------------------------------------------------------------------------
def cron_line(local: str, every: int) -> str:
    return f"*/{every} * * * * {local} fetchmail --silent"


def edit_cron(root: Path, local: str, every: int | None) -> bool:
    """Set (``every`` given) or drop the user's line; the file goes when no line is left.
    Returns whether anything changed."""
    path = RootFS(root).host(CRON_FILE)
    old = path.read_text() if path.is_file() and not path.is_symlink() else ""
    if path.is_symlink():
        raise Pop3Error(f"{path}: is a symbolic link; refusing")
    keep = [ln for ln in old.splitlines() if len(ln.split()) > 6 and not ln.startswith("#")
            and ln.split()[5] != local]  # entries only: the header and SHELL=/PATH= are rewritten
    if every is not None:
        keep.append(cron_line(local, every))
    new = ("# kav4mailservers: fetchmail for POP3 mail (guide 6.5); edited by `kavsetup pop3`\n"
           "SHELL=/bin/sh\nPATH=/usr/local/bin:/usr/bin:/bin\n" + "".join(f"{ln}\n" for ln in keep)) if keep else ""
    if new == old:
        return False
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, new.encode(), mode=0o644, owner=(0, 0) if os.geteuid() == 0 else None)
    else:
        path.unlink(missing_ok=True)
    return True


# -- the two operations -----------------------------------------------------------------------
def add(root: Path, box: Mailbox, every: int = DEFAULT_EVERY, dry_run: bool = False) -> list[str]:
    """Add (or update the password of) one external mailbox; returns what was done."""
    check_names(box.host, box.local)
    box.line()  # validates every value before anything is touched
    if not 1 <= every <= 59:
        raise Pop3Error(f"--every {every}: minutes between 1 and 59")
    home = open_home(root, box.local)
    try:
        where = str(home.path / RCFILE)
        old = read_rc(home)
        new = add_entry(old, box, where)
        done = [f"{where}: poll {box.host} as {box.user} for {box.local}" + (" (unchanged)" if new == old else "")]
        if not dry_run and new != old:
            write_rc(home, new)
    finally:
        home.close()
    cron = RootFS(root).host(CRON_FILE)
    if dry_run:
        done.append(f"{cron}: would run fetchmail for {box.local} every {every} minutes")
    elif edit_cron(root, box.local, every):
        done.append(f"{cron}: fetchmail for {box.local} every {every} minutes")
    return done


def remove(root: Path, host: str, user: str, local: str, dry_run: bool = False) -> list[str]:
    """Remove one external mailbox; the block, the file and the cron line go with the last one."""
    check_names(host, local)
    home = open_home(root, local)
    try:
        where = str(home.path / RCFILE)
        old = read_rc(home)
        new, found = remove_entry(old, host, user, local, where)
        if not found:
            return [f"{where}: no poll of {host} as {user}; nothing to remove"]
        done = [f"{where}: removed poll {host} as {user}" + ("" if new else " (file removed: nothing else in it)")]
        if not dry_run:
            write_rc(home, new)
        last = not has_entries(new, where)
    finally:
        home.close()
    if last:
        cron = RootFS(root).host(CRON_FILE)
        if dry_run:
            done.append(f"{cron}: would drop the fetchmail line of {local}")
        elif edit_cron(root, local, None):
            done.append(f"{cron}: dropped the fetchmail line of {local}")
    return done

