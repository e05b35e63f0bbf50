"""Reducing the server load (guide 6.3.2): wait while the load average is above ``MaxLoadAvg``.

"kavscanner checks the current server load value before scanning each new file" and suspends
until it drops.  The one-minute load average is read from ``/proc/loadavg`` (``os.getloadavg``);
``KAV_LOADAVG_FILE`` names another file with the same first field, so tests can drive a real
pause without loading the machine.
"""

from __future__ import annotations

import os
import time

POLL = 1.0


def current() -> float:
    alt = os.environ.get("KAV_LOADAVG_FILE")
    if alt:
        try:
            with open(alt) as fh:
                return float(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
    return os.getloadavg()[0]


def wait_below(limit: float, poll: float = POLL) -> float:
    """Block until the load average is at most ``limit``; the seconds waited."""
    if limit <= 0:
        return 0.0
    t0 = time.monotonic()
    while current() > limit:
        time.sleep(poll)
    return time.monotonic() - t0
