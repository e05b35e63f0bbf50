"""``kavsetup run [-c CONF]``: the daemons in the foreground, for a container without an init system.

On a host the init system runs them (the units, or the LSB scripts in /etc/init.d); a container
started with ``CMD ["kavsetup", "run"]`` has neither, so this is the one command that runs what is
needed there (issue 11, docs/packaging.md): aveserver (``--foreground``, as the unit runs it) and,
when smtpscanner is a standing daemon (``ListenAddress`` other than ``stdio``; with ``stdio`` the
MTA starts it), smtpscanner ``--daemon`` as the filter's account, exactly as its unit does.

It stays in the foreground as their supervisor, the way a container runtime expects PID 1 to
behave: SIGTERM/SIGINT stop both and exit 0; SIGHUP is passed on (both re-read what they re-read
on HUP); when either daemon exits on its own the other is stopped and ``kavsetup run`` exits with
a non-zero status, so the container's restart policy takes over instead of a half-working filter.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

from kavsetup.commands import add_parser
from runtime.layout import HOST

CONFIG = HOST.conf_file


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_parser(subparsers, "run", description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("-c", "--config", default=CONFIG, help="configuration file (default %(default)s)")
    p.add_argument("--user", default="kluser", help="smtpscanner's account, as its unit's User= (default kluser)")
    p.add_argument("--group", default="filter", help="smtpscanner's group, as its unit's Group= (default filter)")
    p.set_defaults(func=run)


def _program(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise SystemExit(f"kavsetup run: {name}: command not found (is kav4mailservers installed?)")
    return found


def _children(args: argparse.Namespace) -> list[tuple[str, list[str], dict[str, object]]]:
    from runtime.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except (ConfigError, OSError) as exc:
        raise SystemExit(f"kavsetup run: {exc}") from exc
    out: list[tuple[str, list[str], dict[str, object]]] = [
        ("aveserver", [_program("aveserver"), "--foreground", "-c", args.config], {})]
    listen = str(cfg.get("smtpscan.general", "ListenAddress"))
    if listen != "stdio":
        ids: dict[str, object] = {}
        if os.geteuid() == 0:  # the unit's User=/Group=; an unprivileged caller runs it as itself
            ids = {"user": args.user, "group": args.group, "extra_groups": []}
            if listen.startswith("unix:"):  # the unit's RuntimeDirectory (the qmail client's socket)
                rundir = os.path.dirname(listen[5:])
                os.makedirs(rundir, mode=0o755, exist_ok=True)
                shutil.chown(rundir, args.user, args.group)
        out.append(("smtpscanner", [_program("smtpscanner"), "--daemon", "-c", args.config], ids))
    return out


def run(args: argparse.Namespace) -> int:
    stopping = False
    procs: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            signum = signal.SIGTERM
        for _name, p in procs.values():
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for name, argv, ids in _children(args):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **ids)  # type: ignore[call-overload]
        procs[p.pid] = (name, p)
        print(f"kavsetup run: started {name} (pid {p.pid}): {' '.join(argv)}", file=sys.stderr, flush=True)
    status = 0
    while procs:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in procs:
            continue
        name, p = procs.pop(pid)
        p.returncode = os.waitstatus_to_exitcode(wstatus)
        if not stopping:
            print(f"kavsetup run: {name} exited ({p.returncode}); stopping the others", file=sys.stderr, flush=True)
            status = p.returncode or 1
            stopping = True
            forward(signal.SIGTERM, None)
            deadline = time.monotonic() + 30
            for _other, q in procs.values():
                try:
                    q.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    q.kill()
    return status if status > 0 else (1 if status < 0 else 0)
