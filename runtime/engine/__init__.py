"""The scan engine and its daemon: signatures, matcher, unpackers, verdicts, cure; aveserver + clients.

What other components use (the mail filter in particular)::

    from runtime.engine import AveClient, AveServerUnavailable, Status, Verdict
    verdict = AveClient("/var/run/aveserver", timeout=60).scan_bytes(message, "msg", cure=True)

The heavy parts (Hyperscan, the unpackers) load only in aveserver, not in its clients.
"""

from runtime.engine.client import AveClient, AveServerError, AveServerUnavailable
from runtime.engine.verdict import ObjectResult, Status, Verdict

__all__ = ["AveClient", "AveServerError", "AveServerUnavailable", "ObjectResult", "Status", "Verdict"]
