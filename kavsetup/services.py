"""The package's own daemons, started and stopped through the init system that runs this host.

Why kavsetup starts one at all: in Postfix's ``daemon`` form (the default since issue 20) the MTA
hands mail to a standing smtpscanner, so that daemon must answer on the filter port *before* the
MTA is pointed at it, or mail waits in the queue after ``dpkg -i`` (the package leaves mail flowing
at every step).  The mechanism is the one the maintainer scripts use for aveserver (postinst,
prerm): systemd's ``systemctl`` where systemd runs (``/run/systemd/system``, sd_booted(3)), else the
package's LSB script through ``invoke-rc.d`` (which honours policy-rc.d), else the script itself;
with no init system at all (a container) nothing is started and the note names ``kavsetup run``.

What was done is written in the journal (``services``: name, address, whether *we* enabled the
unit) before it is done, so uninstall, a roll-back or ``kavsetup recover`` stops exactly that and
disables only a unit this integration enabled: the system is left as it was.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Any

from kavsetup.integrate.files import Root

#: smtpscanner's unit and LSB script (pkg/deb/debian/units, pkg/sysvinit), named alike.
SMTPSCANNER = "kav4mailservers-smtpscanner"
#: How long a started daemon may take to answer on its address (Python start-up and the first
#: configuration load; ~1 s on a quiet host, several on a loaded one).
READY_TIMEOUT = 60.0
POLICY_RC_D = "/usr/sbin/policy-rc.d"


def init_system(root: Root, name: str) -> str:
    """``systemd``, ``sysv`` (the package's LSB script) or "" (nothing can start ``name`` here)."""
    if not root.is_live:
        return ""
    if os.path.isdir("/run/systemd/system"):
        return "systemd"
    if os.access(f"/etc/init.d/{name}", os.X_OK):
        return "sysv"
    return ""


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    why = (r.stderr or r.stdout).strip().splitlines()
    return r.returncode, why[-1] if why else f"exit {r.returncode}"


def _sysv(name: str, action: str) -> list[str]:
    if shutil.which("invoke-rc.d"):
        return ["invoke-rc.d", name, action]
    if shutil.which("service"):
        return ["service", name, action]
    return [f"/etc/init.d/{name}", action]


def _policy_forbids(name: str) -> bool:
    """Debian's policy-rc.d(8) interface: exit 101 means "do not start services here"."""
    return os.access(POLICY_RC_D, os.X_OK) and _run([POLICY_RC_D, name, "start"])[0] == 101


def answers(address: str, timeout: float = READY_TIMEOUT) -> tuple[bool, str]:
    """Whether something greets with ``220`` on ``address`` (``inet:HOST:PORT`` or ``unix:PATH``)
    within ``timeout``: the MTA may be pointed at it then. The session is closed with QUIT."""
    kind, _, rest = address.partition(":")
    deadline = time.monotonic() + timeout
    last = "nothing listening"
    while True:
        try:
            if kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(10)
                sock.connect(rest)
            else:
                host, _, port = rest.rpartition(":")
                sock = socket.create_connection((host, int(port)), timeout=10)
            with sock:
                greeting = sock.recv(512)
                if greeting.startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return True, f"{address} answers"
                last = f"{address} greeted {greeting[:60]!r}"
        except (OSError, ValueError) as exc:
            last = f"{address}: {exc}"
        if time.monotonic() >= deadline:
            return False, last
        time.sleep(0.25)


def start(root: Root, wanted: tuple[tuple[str, str], ...], record: list[dict[str, Any]],
          save: Any = None, timeout: float = READY_TIMEOUT) -> tuple[bool, list[str]]:
    """Enable (systemd) and (re)start each ``(name, address)`` and wait until it answers.

    Each entry is appended to ``record`` and ``save()`` called *before* the init system is asked,
    so a crash in between still leaves the journal naming what to undo. (ok, notes); on failure
    the caller rolls back, and :func:`release` stops what was started."""
    notes: list[str] = []
    for name, address in wanted:
        init = init_system(root, name)
        entry: dict[str, Any] = {"name": name, "address": address, "init": init, "enabled_by_us": False}
        if not init:
            notes.append(f"{name}: no init system to start it here; start it before mail arrives "
                         f"(in a container: kavsetup run), it must answer on {address}")
            continue
        unit = f"{name}.service"
        if _policy_forbids(name):
            # policy-rc.d (a chroot, an image being built) forbids it, as it does for the maintainer
            # scripts' deb-systemd-invoke and invoke-rc.d: say so instead of waiting for a greeting.
            notes.append(f"{name}: not started (policy-rc.d forbids starting services here); start it "
                         f"before mail arrives, it must answer on {address}")
            continue
        if init == "systemd":
            entry["enabled_by_us"] = _run(["systemctl", "is-enabled", "--quiet", unit])[0] != 0
        record.append(entry)
        if save:
            save()
        if init == "systemd":
            steps = ([["systemctl", "enable", "--quiet", unit]] if entry["enabled_by_us"] else []) + \
                    [["systemctl", "restart", unit]]
        else:  # the package enabled its LSB script (update-rc.d); it runs when ListenAddress is not stdio
            steps = [_sysv(name, "restart")]
        for argv in steps:
            code, why = _run(argv)
            if code != 0:
                return False, [*notes, f"{name}: `{' '.join(argv)}` failed ({why})"]
        ok, why = answers(address, timeout)
        if not ok:
            return False, [*notes, f"{name} was started but does not answer: {why}"]
        notes.append(f"{name}: started ({'systemctl' if init == 'systemd' else argv[0]}); {why}")
    return True, notes


def release(root: Root, record: list[dict[str, Any]]) -> list[str]:
    """Stop what :func:`start` started, newest first, and disable a unit only if it enabled it."""
    notes: list[str] = []
    if not root.is_live:
        return notes
    for entry in reversed(record):
        name, init = entry["name"], entry.get("init", "")
        if init == "systemd":
            unit = f"{name}.service"
            steps = [["systemctl", "stop", unit]] + ([["systemctl", "disable", "--quiet", unit]]
                                                     if entry.get("enabled_by_us") else [])
        elif init == "sysv" and os.access(f"/etc/init.d/{name}", os.X_OK):
            steps = [_sysv(name, "stop")]
        else:
            continue
        for argv in steps:
            code, why = _run(argv)
            notes.append(f"{name}: ran `{' '.join(argv)}`" if code == 0 else
                         f"{name}: `{' '.join(argv)}` failed ({why}); run it yourself")
    return notes
