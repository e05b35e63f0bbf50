"""The service manager's side of the readiness protocol (sd_notify(3)), for tests that run a
daemon the way systemd runs a ``Type=notify`` unit: a datagram socket named by $NOTIFY_SOCKET
and the ``KEY=value`` lines the daemon sends to it."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def manager(path: Path, timeout: float = 60.0) -> socket.socket:
    """A notification socket at ``path`` that any account can send to, as systemd's is (the
    daemon may run as the unit's User=)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    os.chmod(path, 0o666)  # noqa: S103 - an unprivileged daemon sends to it, as to systemd's socket
    sock.settimeout(timeout)
    return sock


def fields(data: bytes) -> dict[str, str]:
    """One notification's fields."""
    return dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
