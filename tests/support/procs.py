"""Waiting for and cleaning up the real daemons the tests start (aveserver, smtpscanner, sinks).

Shared by tests/engine and tests/filter, which both run those programs as real processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def wait_for(pred: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``pred`` until it is true; a daemon that never comes up fails the test by name."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def can_connect(addr: str | Path | tuple[str, int]) -> bool:
    """Whether a UNIX socket path or a (host, port) accepts a connection right now."""
    if isinstance(addr, tuple):
        fam, target = socket.AF_INET, addr
    else:
        fam, target = socket.AF_UNIX, str(addr)
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.connect(target)
            return True
        except OSError:
            return False


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc (pre-forked workers must die with their master)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(d.name))
    return out


def stop(proc: subprocess.Popen[bytes] | None, grace: float = 30) -> None:
    """SIGTERM a daemon the test started and wait ``grace`` seconds for its orderly stop (then
    SIGKILL); its pipes are closed either way, so no test leaks them."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in (proc.stdout, proc.stderr):
        if f:
            f.close()
