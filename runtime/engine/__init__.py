"""The scan engine and its daemon: signatures, matcher, unpackers, verdicts, cure; aveserver + clients.

What other components use (the mail filter in particular)::

    from runtime.engine import AveClient, AveServerUnavailable, Status, Verdict
    verdict = AveClient("/var/run/aveserver", timeout=60).scan_bytes(message, "msg", cure=True)

The heavy parts (Hyperscan, the unpackers) load only in aveserver, not in its clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.engine.verdict import ObjectResult, Status, Verdict

if TYPE_CHECKING:
    from runtime.engine.client import AveClient, AveServerError, AveServerUnavailable

__all__ = ["AveClient", "AveServerError", "AveServerUnavailable", "ObjectResult", "Status", "Verdict"]
_CLIENT = frozenset({"AveClient", "AveServerError", "AveServerUnavailable"})


def __getattr__(name: str) -> Any:
    """The client (sockets, the AVE/1 wire format) is imported on first use (PEP 562): importing
    ``runtime.engine.verdict`` (kavscanner's start-up, an unchanged tree) then costs only that."""
    if name in _CLIENT:
        from runtime.engine import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
