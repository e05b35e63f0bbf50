"""Sendmail: the ``DZ`` version line of sendmail.cf (guide 4.4.1 copies that file to
sendmail.cf.listen), submit.cf (8.12+) and the m4 sources they were built from.

Where the binary lives differs: Debian ``/usr/libexec/sendmail/sendmail`` (older: ``/usr/lib/sm.bin``)
behind the ``sendmail``/``sendmail-mta`` alternatives, Red Hat ``/usr/sbin/sendmail.sendmail``
behind the ``mta`` alternative (Red Hat 9 already), SUSE and FreeBSD ``/usr/sbin/sendmail`` or
``/usr/libexec/sendmail/sendmail`` (FreeBSD's base system, chosen by ``/etc/mail/mailer.conf``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from kavsetup.detect.context import Context
from kavsetup.detect.model import MTAInfo, MTAKind, SendmailInfo, Version

#: Binaries that are sendmail itself (not another MTA's compatibility command).
REAL_BINARIES = ("/usr/libexec/sendmail/sendmail", "/usr/lib/sm.bin/sendmail", "/usr/sbin/sendmail.sendmail",
                 "/usr/sbin/sendmail-mta")
_CF_CANDIDATES = ("/etc/mail/sendmail.cf", "/etc/sendmail.cf")
_DZ = re.compile(r"^DZ(\S+)", re.M)


def dz_version(text: str) -> Version | None:
    """``DZ8.17.1`` -> 8.17.1: the configuration version m4 wrote (cf/m4/version.m4)."""
    match = _DZ.search(text)
    return Version.parse(match.group(1)) if match else None


def _find_mc(ctx: Context, mail_dir: str, submit: bool) -> str | None:
    names = ["submit.mc"] if submit else ["sendmail.mc"]
    if ctx.freebsd:
        # FreeBSD's /etc/mail/Makefile builds from `hostname`.mc (first run copies freebsd.mc).
        hostname = (ctx.fs.read_text("/etc/rc.conf") or "")
        match = re.search(r'^hostname="?([^"\s]+)"?', hostname, re.M)
        if match:
            names.insert(0, f"{match.group(1)}.{'submit.mc' if submit else 'mc'}")
        names.append("freebsd.submit.mc" if submit else "freebsd.mc")
    elif not submit:
        names.append("linux.mc")  # SUSE
    return next((f"{mail_dir}/{n}" for n in names if ctx.fs.lexists(f"{mail_dir}/{n}")), None)


def is_sendmail_binary(ctx: Context, path: PurePosixPath) -> bool:
    if str(path) in REAL_BINARIES:
        return True
    head = ctx.fs.read_bytes_head(path, 4 << 20) or b""
    return b"Sendmail" in head and b"Postfix" not in head and b"Exim" not in head


def detect_sendmail(ctx: Context) -> MTAInfo | None:
    fs = ctx.fs
    binary = next((p for p in REAL_BINARIES if fs.is_file(p)), None)
    if binary is None and fs.is_file("/usr/sbin/sendmail") and is_sendmail_binary(
            ctx, fs.resolve("/usr/sbin/sendmail").target):
        binary = "/usr/sbin/sendmail"  # SUSE: the package installs it in place, no alternatives
    pkg_version, pkg_source, pkg_name = ctx.package_version("sendmail-bin", "sendmail")
    cf = next((c for c in _CF_CANDIDATES if fs.lexists(c)), None)
    if binary is None and pkg_name is None:
        return None
    if cf is None:
        cf = _CF_CANDIDATES[0]
        fs.problem(cf, "not found (Sendmail is installed but has no sendmail.cf)")
    mail_dir = str(PurePosixPath(cf).parent) if cf.startswith("/etc/mail/") else "/etc/mail"
    text = fs.read_text(cf)
    version, source = (dz_version(text), "sendmail.cf DZ") if text else (None, "")
    if text is not None and version is None:
        fs.problem(cf, "no DZ (version) line: not a sendmail.cf generated from the m4 sources?")
    if version is None and pkg_version is not None:
        version, source = pkg_version, pkg_source
    if version is None:
        source = ""
    submit_cf = f"{mail_dir}/submit.cf"
    info = SendmailInfo(
        version=version,
        sendmail_cf=PurePosixPath(cf),
        sendmail_cf_exists=fs.is_file(cf),
        submit_cf=PurePosixPath(submit_cf) if fs.lexists(submit_cf) else None,
        mc=PurePosixPath(m) if (m := _find_mc(ctx, mail_dir, False)) else None,
        submit_mc=PurePosixPath(m) if (m := _find_mc(ctx, mail_dir, True)) else None,
        mail_dir=PurePosixPath(mail_dir),
    )
    if info.submit_cf is not None:
        fs.read_text(submit_cf)
    files = tuple(p for p in (info.sendmail_cf, info.submit_cf, info.mc, info.submit_mc)
                  if p is not None and fs.lexists(p))
    return MTAInfo(kind=MTAKind.SENDMAIL, installed=binary is not None, active=False, version=version,
                   version_source=source, binary=PurePosixPath(binary) if binary else None,
                   config_file=PurePosixPath(cf), package=pkg_name, details=info, files=files)
