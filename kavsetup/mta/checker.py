"""Run an MTA's own checker (``postfix check``, ``exim -bV``, ``sendmail -bt``) on what we wrote.

Where the checker can run: on the live system (root ``/``) directly, and in another root via
``chroot`` when its binary is inside that root and we are root.  Anywhere else the MTA module
says that verification was skipped and why — never pretends.  argv lists only, never a shell.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath

from kavsetup.integrate.files import Root

TIMEOUT = 60


def runner(root: Root, binary: str) -> tuple[list[str] | None, str]:
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


def run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    """(exit status, stdout+stderr); 127 and the reason when it could not run at all."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                           check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return p.returncode, (p.stdout + p.stderr).strip()


def last_line(out: str, code: int) -> str:
    return out.splitlines()[-1] if out else str(code)
