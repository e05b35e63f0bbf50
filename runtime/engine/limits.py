"""Scan limits and the per-scan budget that enforces them.

Unpacking is where an anti-virus can be made to spend unbounded memory or time (zip bombs,
quines, deep nesting).  Every scan gets one Budget: members, unpacked bytes and time are counted
across the whole object tree, and decompressors produce output in bounded chunks that are charged
before they are kept, so memory stays below ``max_unpacked`` plus the object itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The ``[aveserver.limits]`` keys (defaults as in runtime/config/schema.py)."""

    max_depth: int = 16  # containers nested inside each other (MaxDepth)
    max_members: int = 10_000  # objects unpacked from one object (MaxFiles)
    max_unpacked: int = 256 * MiB  # bytes unpacked from one object (MaxUnpackedSize)
    max_ratio: int = 200  # unpacked/packed of one member once it passes 1 MiB (MaxRatio)
    max_time: float = 60.0  # seconds for one top-level object (MaxScanTime)
    # Not a key, and not a limit: zip members declaring at least this many bytes are streamed
    # through the matchers instead of unpacked whole (runtime/engine/streamscan.py); the verdicts
    # are the same either way (tests/engine/test_stream_members.py), only the memory differs.
    stream_member_min: int = 1 * MiB

    @classmethod
    def from_config(cls, cfg: object) -> Limits:
        """Read ``[aveserver.limits]``; a key the schema lacks keeps our default."""
        values = {}
        for attr, key in CONFIG_KEYS.items():
            try:
                values[attr] = cfg.get("aveserver.limits", key)  # type: ignore[attr-defined]
            except KeyError:
                continue
        return cls(**values)


CONFIG_KEYS = {
    "max_depth": "MaxDepth",
    "max_members": "MaxFiles",
    "max_unpacked": "MaxUnpackedSize",
    "max_ratio": "MaxRatio",
    "max_time": "MaxScanTime",
}

RATIO_FLOOR = 1 * MiB  # small members may legitimately compress extremely well


class LimitExceeded(Exception):
    """A limit stopped the scan of an object; ``str(e)`` names the limit."""


class Corrupted(Exception):
    """A container is truncated or malformed (status CORRUPTED)."""


class Protected(Exception):
    """A member is encrypted (status PROTECTED)."""


class Budget:
    """Counters shared by every object of one scan."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_time
        self.members = 0
        self.unpacked = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"scan time limit ({self.limits.max_time:g} s) exceeded")

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise LimitExceeded(f"member count limit ({self.limits.max_members}) exceeded")

    def charge(self, n: int, produced: int, packed: int) -> None:
        """Account ``n`` new bytes of a member that has ``produced`` bytes from ``packed`` input."""
        self.unpacked += n
        if self.unpacked > self.limits.max_unpacked:
            raise LimitExceeded(f"unpacked size limit ({self.limits.max_unpacked} bytes) exceeded")
        if produced > RATIO_FLOOR and produced > self.limits.max_ratio * max(packed, 1):
            raise LimitExceeded(f"compression ratio limit ({self.limits.max_ratio}) exceeded")
        self.check_time()
