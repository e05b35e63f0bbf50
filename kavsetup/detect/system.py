"""``detect(root) -> System``: the OS, the package database, each MTA, which one is active,
and the accounts — assembled into one frozen value (guide 3.4, first step of setup)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from kavsetup.detect.active import find_active
from kavsetup.detect.context import Context
from kavsetup.detect.exim import detect_exim
from kavsetup.detect.model import (
    InitSystem,
    MTAInfo,
    MTAKind,
    OSFamily,
    OSInfo,
    PackageFormat,
    System,
    Users,
)
from kavsetup.detect.osinfo import detect_os
from kavsetup.detect.packages import PackageDB, read_package_db
from kavsetup.detect.postfix import detect_postfix
from kavsetup.detect.qmail import detect_qmail
from kavsetup.detect.rootfs import RootFS
from kavsetup.detect.sendmail import detect_sendmail
from kavsetup.detect.users import read_users

_DETECTORS = (detect_postfix, detect_sendmail, detect_exim, detect_qmail)
T = TypeVar("T")


def _guarded(fs: RootFS, what: str, step: Callable[[], T], fallback: T) -> T:
    """Run one detection step; an OSError that got past RootFS (a directory an unprivileged
    caller may not search) becomes a problem line and the step's fallback value."""
    try:
        return step()
    except OSError as exc:
        fs.guard(what, exc)
        return fallback


def detect_system(root: Path, *, run_binaries: bool = True, fs: RootFS | None = None) -> System:
    root = Path(root).resolve()
    fs = fs or RootFS(root)
    if not root.is_dir():
        fs.problem(str(root), "root is not a directory")
    unknown = OSInfo("unknown", "", OSFamily.UNKNOWN, InitSystem.UNKNOWN, PackageFormat.UNKNOWN,
                     "unknown operating system")
    osinfo = _guarded(fs, "/etc/os-release", lambda: detect_os(fs), unknown)
    pkgs = _guarded(fs, "package database", lambda: read_package_db(fs), PackageDB(PackageFormat.UNKNOWN))
    ctx = Context(fs=fs, os=osinfo, pkgs=pkgs, run_binaries=run_binaries)
    found: list[MTAInfo] = []
    for detector in _DETECTORS:
        mta = _guarded(fs, detector.__name__.removeprefix("detect_"), partial(detector, ctx), None)
        if mta is not None:
            found.append(mta)
    installed = [m.kind for m in found if m.installed]
    no_answer: tuple[MTAKind | None, str] = (None, "could not be determined")
    active_kind, how = _guarded(fs, "/usr/sbin/sendmail", lambda: find_active(ctx, installed), no_answer)
    if active_kind is not None and active_kind not in installed:
        fs.problem("/usr/sbin/sendmail", f"leads to {active_kind.value} ({how}), which is not installed")
        active_kind = None
    mtas = tuple(dataclasses.replace(m, active=m.kind is active_kind) for m in found)
    active = next((m for m in mtas if m.active), None)
    if active is None and installed:
        fs.problem("/usr/sbin/sendmail", f"cannot tell which MTA is active: {how}")
    hint = active.exim.exim_user if active is not None and active.kind is MTAKind.EXIM else ""
    if active is not None and active.kind is MTAKind.POSTFIX:
        hint = active.postfix.mail_owner
    users = _guarded(fs, "/etc/passwd", lambda: read_users(fs, active.kind if active else None, hint),
                     Users((), (), None))
    problems = [*fs.problems]
    return System(root=root, os=osinfo, mtas=mtas, active=active, users=users,
                  problems=tuple(problems), active_reason=how if active else "",
                  package_db=pkgs.format, package_db_note=pkgs.unreadable)
