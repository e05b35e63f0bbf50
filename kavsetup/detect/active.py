"""Which installed MTA is the one the system hands mail to.

Every MTA installs a ``/usr/sbin/sendmail``; what it *is* decides (guide 3.4 "searching for an
installed mail server"):
- FreeBSD: ``/etc/mail/mailer.conf`` maps ``sendmail`` to the real program (mailwrapper(8));
- elsewhere: follow ``/usr/sbin/sendmail`` through its symlinks inside the tree — Debian
  alternatives (``/etc/alternatives/sendmail``), Red Hat's ``mta`` alternative
  (``sendmail.postfix``/``sendmail.sendmail``/``sendmail.exim``), qmail's
  ``/var/qmail/bin/sendmail`` — and name the final file by its path, then by the package that
  owns it, then by what its bytes say.
If that leads nowhere and exactly one MTA is installed, that one is active.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from kavsetup.detect.context import Context
from kavsetup.detect.model import MTAKind
from kavsetup.detect.packages import dpkg_files

_PACKAGES: dict[str, MTAKind] = {
    "postfix": MTAKind.POSTFIX, "sendmail": MTAKind.SENDMAIL, "sendmail-bin": MTAKind.SENDMAIL,
    "exim4-daemon-light": MTAKind.EXIM, "exim4-daemon-heavy": MTAKind.EXIM, "exim": MTAKind.EXIM,
    "exim4": MTAKind.EXIM, "qmail": MTAKind.QMAIL, "netqmail": MTAKind.QMAIL,
}


def kind_by_path(path: PurePosixPath) -> MTAKind | None:
    text = str(path)
    if "postfix" in text:
        return MTAKind.POSTFIX
    if "exim" in text:
        return MTAKind.EXIM
    if "qmail" in text:
        return MTAKind.QMAIL
    if text in ("/usr/libexec/sendmail/sendmail", "/usr/lib/sm.bin/sendmail", "/usr/sbin/sendmail.sendmail"):
        return MTAKind.SENDMAIL
    return None


def kind_by_content(head: bytes) -> MTAKind | None:
    if b"mail_version=" in head or b"postdrop" in head:
        return MTAKind.POSTFIX
    if b"Exim" in head:
        return MTAKind.EXIM
    if b"qmail" in head:
        return MTAKind.QMAIL
    if b"Sendmail" in head:
        return MTAKind.SENDMAIL
    return None


def mailer_conf(ctx: Context) -> PurePosixPath | None:
    """FreeBSD mailwrapper(8): the program ``sendmail`` maps to."""
    text = ctx.fs.read_text("/etc/mail/mailer.conf")
    for line in (text or "").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "sendmail":
            return PurePosixPath(fields[1])
    return None


def classify(ctx: Context, path: PurePosixPath) -> tuple[MTAKind | None, str]:
    """(kind, how we know) for a sendmail-compatible program inside the tree."""
    fs = ctx.fs
    hops = fs.link_chain(path)
    final = fs.resolve(path)
    for hop in (*hops, final.target):
        kind = kind_by_path(hop)
        if kind is not None:
            return kind, " -> ".join(str(h) for h in hops)
    if not final.exists:
        if len(hops) > 1:
            return None, f"{path}: broken symbolic link (points to {final.target})"
        return None, f"{path}: does not exist"
    dpkg_files(fs, ctx.pkgs, list(_PACKAGES))
    owner = ctx.pkgs.owner(final.target) or ctx.pkgs.owner(path)
    if owner in _PACKAGES:
        return _PACKAGES[owner], f"{final.target} belongs to package {owner}"
    kind = kind_by_content(fs.read_bytes_head(final.target, 8 << 20) or b"")
    if kind is not None:
        return kind, f"{final.target} identifies itself as {kind.value}"
    return None, f"{final.target}: not recognised as any supported MTA"


def find_active(ctx: Context, installed: list[MTAKind]) -> tuple[MTAKind | None, str]:
    fs = ctx.fs
    if ctx.freebsd or fs.is_file("/etc/mail/mailer.conf"):
        program = mailer_conf(ctx)
        if program is not None:
            kind, how = classify(ctx, program)
            if kind is not None:
                return kind, f"/etc/mail/mailer.conf: sendmail -> {how}"
            reason = how.split(": ", 1)[-1] if how.startswith(str(program)) else how
            fs.problem("/etc/mail/mailer.conf", f"sendmail -> {program}: {reason}")
            rc = fs.read_text("/etc/rc.conf") if fs.is_file("/etc/rc.conf") else None
            if rc and re.search(r'^sendmail_enable="?NONE', rc, re.M):
                return None, "mailer.conf points at an unknown program and rc.conf disables sendmail"
    for path in ("/usr/sbin/sendmail", "/usr/lib/sendmail"):
        if fs.lexists(path):
            kind, how = classify(ctx, PurePosixPath(path))
            if kind is not None:
                return kind, how
            fs.problem(path, how.split(": ", 1)[-1] if how.startswith(path) else how)
            break
    if len(installed) == 1:
        return installed[0], "the only MTA installed"
    return None, "no /usr/sbin/sendmail leads to an installed MTA"
