"""Run the systemd units the package (or kavsetup) installed, without systemd.

The roots have no init system, but the scenarios should start the daemons the way the shipped unit
files say, so that a wrong ExecStart, User or RuntimeDirectory in a unit fails the matrix instead of
being hidden by a hand-written command line. This reads the few keys our units use and runs the
ExecStart in the foreground inside the sandbox, as the unit's User/Group (via setpriv).
"""

from __future__ import annotations

import configparser
import shlex
from dataclasses import dataclass
from pathlib import Path

from .sandbox import Sandbox

UNIT_DIRS = ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")


@dataclass(frozen=True)
class Unit:
    name: str
    exec_start: list[str]
    user: str | None
    group: str | None
    runtime_dirs: tuple[str, ...]
    state_dirs: tuple[str, ...]
    logs_dirs: tuple[str, ...]
    type: str = "simple"
    pid_file: str | None = None


def find(sb: Sandbox, name: str) -> Path | None:
    for d in UNIT_DIRS:
        p = sb.path(f"/{d}/{name}")
        if p.exists():
            return p
    return None


def load(path: Path) -> Unit:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    svc = cp["Service"]
    argv = shlex.split(svc["ExecStart"].lstrip("-@+!"))
    return Unit(
        name=path.name,
        exec_start=argv,
        user=svc.get("User"),
        group=svc.get("Group"),
        runtime_dirs=tuple(svc.get("RuntimeDirectory", "").split()),
        state_dirs=tuple(svc.get("StateDirectory", "").split()),
        logs_dirs=tuple(svc.get("LogsDirectory", "").split()),
        type=svc.get("Type", "simple"),
        pid_file=svc.get("PIDFile"),
    )


def start(sb: Sandbox, unit: Unit) -> None:
    owner = f"{unit.user or 'root'}:{unit.group or (unit.user or 'root')}"
    for base, dirs in (("/run", unit.runtime_dirs), ("/var/lib", unit.state_dirs), ("/var/log", unit.logs_dirs)):
        for d in dirs:
            sb.run(["install", "-d", "-o", owner.split(":")[0], "-g", owner.split(":")[1], f"{base}/{d}"]).check()
    argv = unit.exec_start
    if unit.user:
        ids = ["--reuid", unit.user, "--init-groups"]
        if unit.group:
            ids[2:2] = ["--regid", unit.group]
        else:
            ids[2:2] = ["--regid", unit.user]
        argv = ["setpriv", *ids, "--", *argv]
    sb.spawn(unit.name, argv)


def stop(sb: Sandbox, unit: Unit) -> None:
    """Stop by PID: the process we started, and for Type=forking the PID its PIDFile names."""
    sb.stop(unit.name)
    if unit.pid_file:
        pid_path = sb.path(unit.pid_file)
        try:
            pid = int(pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        sb.run(["kill", "-TERM", str(pid)])
