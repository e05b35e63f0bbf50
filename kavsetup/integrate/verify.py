"""Run the MTA's own checker on what we wrote (design.md: verify).

Where the checker can run: on the live system (root ``/``) directly, and in another root via
``chroot`` when its binary is inside that root and we are root.  Anywhere else we say that
verification was skipped and why — never pretend.  A checker that fails makes the transaction
roll everything back.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath

from kavsetup.detect.model import MTAInfo, MTAKind
from kavsetup.integrate.files import Root

TIMEOUT = 60


def _runner(root: Root, binary: str) -> tuple[list[str] | None, str]:
    """argv prefix that runs ``binary`` (an in-system path) inside ``root``, or (None, why)."""
    host = _resolve(root, binary)
    if host is None or not os.access(host, os.X_OK):
        return None, f"{binary} is not in {root.path}"
    if root.is_live:
        return [binary], ""
    if os.geteuid() != 0:
        return None, f"running {binary} inside {root.path} needs chroot, i.e. root"
    return ["chroot", str(root.path), binary], ""


def _resolve(root: Root, path: str) -> Path | None:
    """Host path of ``path`` with symlinks followed *inside* the root (Debian's
    /usr/sbin/sendmail -> /etc/alternatives/sendmail -> ... are absolute links)."""
    p = PurePosixPath(path)
    for _ in range(40):
        host = root.host(p)
        if host.is_symlink():
            target = PurePosixPath(os.readlink(host))
            p = target if target.is_absolute() else PurePosixPath(os.path.normpath(p.parent / target))
            continue
        return host if host.exists() else None
    return None


def _run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                           check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return p.returncode, (p.stdout + p.stderr).strip()


def verify(root: Root, mta: MTAInfo, extra: dict[str, str]) -> tuple[bool, str]:
    """(ok, message).  ``extra`` carries paths the plan created (``listen_config``, ``conf_file``).

    Our own kav4mailservers.conf is checked first with the runtime's loader, so the file the
    filter will read is known good before the MTA is pointed at it."""
    if extra.get("conf_file"):
        ok, why = _check_conf(root, extra["conf_file"])
        if not ok:
            return ok, why
    ok, why = _verify_mta(root, mta, extra)
    return ok, why


def _check_conf(root: Root, conf: str) -> tuple[bool, str]:
    try:
        from runtime.config import ConfigError, load_config
    except ImportError:
        return True, ""
    try:
        load_config(root.host(conf))
    except ConfigError as exc:
        return False, f"{conf}: {str(exc).splitlines()[0]}"
    return True, ""


def _verify_mta(root: Root, mta: MTAInfo, extra: dict[str, str]) -> tuple[bool, str]:
    if mta.kind is MTAKind.POSTFIX:
        cfg = str(mta.postfix.config_directory)
        argv, why = _runner(root, "/usr/sbin/postfix")
        if argv is None:
            return True, f"verification skipped: {why}"
        pc, _ = _runner(root, "/usr/sbin/postconf")
        if pc is not None:
            code, out = _run([*pc, "-c", cfg, "-M"])
            if code != 0 or "fatal" in out:
                return False, f"postconf -M: {out.splitlines()[-1] if out else code}"
        code, out = _run([*argv, "-c", cfg, "check"])
        if code != 0:
            return False, f"postfix check: {out.splitlines()[-1] if out else code}"
        return True, "postfix check passed"
    if mta.kind is MTAKind.EXIM:
        binary = str(mta.exim.binary)
        argv, why = _runner(root, binary)
        if argv is None:
            return True, f"verification skipped: {why}"
        code, out = _run([*argv, "-bV", "-C", extra["listen_config"]])
        if code != 0:
            return False, f"exim -bV -C {extra['listen_config']}: {out.splitlines()[-1] if out else code}"
        return True, "exim -bV passed"
    if mta.kind is MTAKind.SENDMAIL:
        argv, why = _runner(root, "/usr/sbin/sendmail")
        if argv is None:
            return True, f"verification skipped: {why}"
        code, out = _run([*argv, "-bt", "-C", extra["listen_config"]], "3,0 postmaster@example.com\n")
        if "smtpscanner" not in out:
            last = out.splitlines()[-1] if out else str(code)
            return False, f"sendmail -bt -C {extra['listen_config']} does not route to smtpscanner: {last}"
        return True, "sendmail -bt routes mail to smtpscanner"
    home = PurePosixPath(mta.qmail.home)
    img = root.read(home / "bin" / "queue.kav55")
    if img.kind != "file" or not img.mode & 0o4000:
        return False, "queue.kav55 is not the set-uid original qmail-queue"
    return True, "verification: queue.kav55 holds the original qmail-queue (set-uid); no qmail checker exists"
