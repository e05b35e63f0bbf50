"""Product defects the matrix has found and reported, recognised by their failure message.

A failure whose message contains one of these strings is still a FAIL in the table (with the
defect named); pytest reports it as xfail with the defect, so CI stays usable while the owner
fixes it. The match is on the actual failure each run: once the defect is fixed the scenario runs
on and passes or fails on its own merits; any other failure fails the test. Remove an entry when
its fix lands.
"""

from __future__ import annotations

KNOWN_DEFECTS: tuple[tuple[str, str], ...] = ()


def known_defect(detail: str) -> str | None:
    """The defect a failure message names; the logs appended after it (`--- file`) do not count."""
    message = detail.split("\n--- ", 1)[0]
    for needle, description in KNOWN_DEFECTS:
        if needle in message:
            return description
    return None
