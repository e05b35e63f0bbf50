"""qmail: the fixed ``/var/qmail`` layout, ``bin/qmail-queue`` and whether it is already wrapped
(guide 4.4.2 renames it to ``queue.kav55`` and puts smtpscanner's wrapper in its place).

"Already wrapped" — the installer must refuse (docs/integration.md) — when ``bin/queue.kav55`` exists (ours
or the original product's), when ``qmail-queue`` carries our marker (``kav4mailservers``), or
when it is a symlink to a program outside ``/var/qmail`` (another wrapper: qmail-scanner,
simscan and friends are installed this way).  qmail has no version command: the version comes
from the package database (``qmail-1.03``, ``netqmail-1.06``) when there is one.
"""

from __future__ import annotations

import stat as stat_mod
from pathlib import PurePosixPath

from kavsetup.detect.context import Context
from kavsetup.detect.model import MTAInfo, MTAKind, QmailInfo
from kavsetup.detect.rootfs import RootFS

HOME = PurePosixPath("/var/qmail")
WRAP_MARKER = b"kav4mailservers"
ORIGINAL_NAME = "queue.kav55"


def _names(fs: RootFS, path: str) -> dict[int, str]:
    names: dict[int, str] = {}
    for line in (fs.read_text(path) or "").splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            names.setdefault(int(parts[2]), parts[0])
    return names


def read_postmaster(lines: list[str]) -> tuple[str, ...]:
    """Forward targets of ``alias/.qmail-postmaster``: dot-qmail(5) ``&addr`` or a bare address
    forwards; ``./Maildir/``, ``/path``, ``|cmd`` and ``#`` comments do not."""
    out = []
    for line in lines:
        s = line.strip()
        if not s or s.startswith(("#", "|", "/", ".")):
            continue
        out.append(s[1:] if s.startswith("&") else s)
    return tuple(out)


def qmail_info(fs: RootFS, home: PurePosixPath = HOME) -> QmailInfo:
    """What integration needs to know about the qmail installed at ``home``."""
    queue = home / "bin" / "qmail-queue"
    original = home / "bin" / ORIGINAL_NAME
    wrapped = fs.lexists(original)
    head = fs.read_bytes_head(queue, 1 << 20) or b""
    if WRAP_MARKER in head:
        wrapped = True
    link = fs.readlink(queue)
    if link is not None and not str(fs.resolve(queue).target).startswith(str(home) + "/"):
        wrapped = True
    if fs.lexists(queue) and not fs.exists(queue):
        fs.problem(queue, f"broken symbolic link (points to {link})")
    owner = group = ""
    mode = None
    st = fs.stat(queue)
    if st is not None:
        owner = _names(fs, "/etc/passwd").get(st.st_uid, str(st.st_uid))
        group = _names(fs, "/etc/group").get(st.st_gid, str(st.st_gid))
        mode = stat_mod.S_IMODE(st.st_mode)
    control = home / "control"
    alias = home / "alias" / ".qmail-postmaster"
    targets = read_postmaster((fs.read_text(alias) or "").splitlines()) if fs.lexists(alias) else ()
    return QmailInfo(
        home=home,
        qmail_queue=queue,
        qmail_queue_exists=fs.exists(queue),
        already_wrapped=wrapped,
        original_queue=original if fs.lexists(original) else None,
        control_dir=control,
        control_files=tuple(fs.listdir(control)),
        postmaster_alias=alias if fs.lexists(alias) else None,
        postmaster_targets=targets,
        qmail_queue_owner=owner,
        qmail_queue_group=group,
        qmail_queue_mode=mode,
    )


def detect_qmail(ctx: Context) -> MTAInfo | None:
    fs = ctx.fs
    bin_dir = HOME / "bin"
    queue = bin_dir / "qmail-queue"
    pkg_version, pkg_source, pkg_name = ctx.package_version("netqmail", "qmail", "qmail-mta")
    if not (fs.lexists(queue) or fs.is_file(bin_dir / "qmail-send")) and pkg_name is None:
        return None
    info = qmail_info(fs, HOME)
    files = tuple(p for p in (queue, bin_dir / ORIGINAL_NAME, info.postmaster_alias) if p and fs.lexists(p))
    return MTAInfo(kind=MTAKind.QMAIL, installed=fs.lexists(queue) or fs.is_file(bin_dir / "qmail-send"),
                   active=False, version=pkg_version, version_source=pkg_source if pkg_version else "",
                   binary=queue, config_file=None, package=pkg_name, details=info, files=files)
