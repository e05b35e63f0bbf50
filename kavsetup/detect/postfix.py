"""Postfix: version, directories and main.cf/master.cf (guide 4.4.3 edits those two files).

Order of evidence: the real ``postconf`` run inside the tree (exactly what Postfix itself will
use), else main.cf's explicit settings plus the distribution's compiled-in defaults, with the
version from the package database (or a Red Hat ``/usr/share/doc/postfix-X.Y.Z`` directory).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from kavsetup import postfix_cf
from kavsetup.detect.context import Context
from kavsetup.detect.model import MTAInfo, MTAKind, OSFamily, PostfixInfo, Version
from kavsetup.detect.runner import run_in_root

_SBIN = ("/usr/sbin", "/usr/local/sbin")
_CONFIG_DIRS = ("/etc/postfix", "/usr/local/etc/postfix")
# Compiled-in daemon_directory per family (each distribution's postfix build).
_DAEMON_DIRS: dict[OSFamily, tuple[str, ...]] = {
    OSFamily.DEBIAN: ("/usr/lib/postfix/sbin", "/usr/lib/postfix"),
    OSFamily.RHEL: ("/usr/libexec/postfix",),
    OSFamily.SUSE: ("/usr/lib/postfix/bin", "/usr/lib/postfix"),
    OSFamily.MANDRAKE: ("/usr/lib/postfix",),
    OSFamily.FREEBSD: ("/usr/local/libexec/postfix",),
}
_ALL_DAEMON_DIRS = ("/usr/lib/postfix/sbin", "/usr/libexec/postfix", "/usr/lib/postfix/bin",
                    "/usr/lib/postfix", "/usr/local/libexec/postfix")
_WANTED = ("mail_version", "config_directory", "daemon_directory", "command_directory",
           "queue_directory", "mail_owner", "setgid_group", "content_filter")


def parse_main_cf(text: str) -> list[tuple[str, str]]:
    """``name = value`` pairs in file order, read by kavsetup's one main.cf reader (postfix_cf:
    postconf(5) logical lines).  Later duplicates are kept: the last one wins when read."""
    return [(e.name, e.value) for e in postfix_cf.entries(text)
            if "=" in e.text and re.fullmatch(r"[A-Za-z0-9_.-]+", e.name)]


def _postconf(ctx: Context, binary: str, config_dir: str) -> dict[str, str]:
    if not ctx.run_binaries:
        return {}
    proc = run_in_root(ctx.fs, [binary, "-c", config_dir, *_WANTED])
    if proc is None or proc.returncode != 0:
        return {}
    values = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if not sep and line.endswith(" ="):
            name, sep, value = line[:-2], " = ", ""
        if sep:
            values[name.strip()] = value.strip()
    return values


def _doc_version(ctx: Context) -> Version | None:
    """Red Hat before Fedora 20 and many rpm builds name the doc directory postfix-X.Y.Z."""
    for entry in ctx.fs.listdir("/usr/share/doc"):
        match = re.fullmatch(r"postfix-(\d[\w.]*)", entry)
        if match:
            return Version.parse(match.group(1))
    return None


def _binary_version(ctx: Context, binaries: list[str]) -> tuple[Version | None, str]:
    """Postfix programs embed ``mail_version=X.Y.Z`` (for check_mail_version()); reading it
    needs no execution, so it works for a FreeBSD image on a Linux host."""
    for binary in binaries:
        head = ctx.fs.read_bytes_head(binary, 8 << 20) or b""
        match = re.search(rb"mail_version=(\d+\.\d+[\w.-]*)", head)
        if match:
            return Version.parse(match.group(1).decode("ascii")), f"{binary} (mail_version string)"
    return None, ""


def detect_postfix(ctx: Context) -> MTAInfo | None:
    fs = ctx.fs
    postconf = next((f"{d}/postconf" for d in _SBIN if fs.is_file(f"{d}/postconf")), None)
    master_bin = next((f"{d}/postfix" for d in _SBIN if fs.is_file(f"{d}/postfix")), None)
    pkg_version, pkg_source, pkg_name = ctx.package_version("postfix", "postfix-current", "postfix-base")
    if postconf is None and master_bin is None and pkg_name is None:
        return None
    config_dir = next((d for d in _CONFIG_DIRS if fs.is_dir(d)), _CONFIG_DIRS[1] if ctx.freebsd
                      else _CONFIG_DIRS[0])
    ran = _postconf(ctx, postconf, config_dir) if postconf else {}
    if ran.get("config_directory"):
        config_dir = ran["config_directory"]
    main_cf = f"{config_dir}/main.cf"
    master_cf = f"{config_dir}/master.cf"
    text = fs.read_text(main_cf) if fs.lexists(main_cf) else None
    if text is None and not fs.lexists(main_cf):
        fs.problem(main_cf, "not found (Postfix is installed but not configured)")
    params = parse_main_cf(text or "")
    explicit = dict(params)
    if fs.lexists(master_cf):
        fs.read_text(master_cf)  # reports an unreadable master.cf now, not at install time

    def value(name: str, default: str) -> str:
        return ran.get(name) or explicit.get(name) or default

    daemon_default = next((d for d in _DAEMON_DIRS.get(ctx.os.family, _ALL_DAEMON_DIRS)
                           if fs.is_file(f"{d}/master")), None)
    if daemon_default is None:
        daemon_default = next((d for d in _ALL_DAEMON_DIRS if fs.is_file(f"{d}/master")), None)
    daemon_dir = value("daemon_directory", daemon_default or "")
    command_dir = value("command_directory", str(PurePosixPath(postconf or master_bin or "").parent)
                        if (postconf or master_bin) else "")
    queue_default = "/var/spool/postfix"
    version, source = None, ""
    if ran.get("mail_version"):
        version, source = Version.parse(ran["mail_version"]), "postconf"
    elif pkg_version is not None:
        version, source = pkg_version, pkg_source
    else:
        version, source = _binary_version(ctx, [b for b in (postconf, "/usr/sbin/sendmail",
                                                             "/usr/local/sbin/sendmail") if b])
        if version is None:
            version = _doc_version(ctx)
            source = "/usr/share/doc" if version else ""
    info = PostfixInfo(
        version=version,
        config_directory=PurePosixPath(config_dir),
        daemon_directory=PurePosixPath(daemon_dir) if daemon_dir else None,
        command_directory=PurePosixPath(command_dir) if command_dir else None,
        queue_directory=PurePosixPath(value("queue_directory", queue_default)),
        main_cf=PurePosixPath(main_cf),
        master_cf=PurePosixPath(master_cf),
        main_cf_exists=fs.is_file(main_cf),
        master_cf_exists=fs.is_file(master_cf),
        mail_owner=value("mail_owner", "postfix"),
        setgid_group=value("setgid_group", "postdrop"),
        content_filter=ran.get("content_filter", explicit.get("content_filter", "")),
        parameters=tuple(params),
        postconf_ran=bool(ran),
    )
    binary = postconf or master_bin
    files = tuple(PurePosixPath(p) for p in (main_cf, master_cf) if fs.lexists(p))
    return MTAInfo(kind=MTAKind.POSTFIX, installed=postconf is not None or master_bin is not None,
                   active=False, version=version, version_source=source,
                   binary=PurePosixPath(binary) if binary else None,
                   config_file=PurePosixPath(main_cf), package=pkg_name, details=info, files=files)


def owns_sendmail(path: PurePosixPath) -> bool:
    """Postfix's sendmail-compatible binary by name (RHEL alternatives: sendmail.postfix)."""
    return "postfix" in str(path)
