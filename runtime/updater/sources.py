"""Where updates come from, in the guide's order (5.1, 5.1.1), and which sources are cooling down.

* ``-g DIR|URL`` or ``UpdateServerUrl`` (when ``UseUpdateServerUrl=yes``) first;
* then, unless ``UseUpdateServerUrlOnly=yes``, the shipped server list (``mirrors.list``, the role
  of the guide's ``updcfg.xml``: the admin does not edit it; ``[updater.path] ServerListFile``
  names another list, for a site that runs its own fleet of mirrors).

A source that answered 429 or 403 is skipped until its cool-down (Retry-After, persisted in
``.keepup2date/cooldown.json``) has passed, so an hourly cron job does not keep hammering a mirror
that asked it to wait.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

SHIPPED_LIST = Path(__file__).resolve().parent / "mirrors.list"


@dataclass(frozen=True)
class Entry:
    url: str
    txt: str | None = None  # DNS name of the version TXT record (ClamAV's official layout)


def read_list(path: Path) -> list[Entry]:
    """Parse a server list; errors name the file and the line."""
    out = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        txt = None
        for extra in words[1:]:
            key, eq, value = extra.partition("=")
            if key != "txt" or not eq or not value:
                raise ValueError(f"{path}:{no}: unknown field {extra[:40]!r} (expected txt=NAME)")
            txt = value
        out.append(Entry(words[0], txt))
    return out


def ordered(cfg: object, override: str | None) -> tuple[list[Entry], bool]:
    """The sources to try, in order, and whether the list is "only these" (no fallback)."""
    opt = "updater.options"
    get = cfg.get  # type: ignore[attr-defined]
    first: list[Entry] = []
    if override:
        first.append(Entry(override))
    elif get(opt, "UseUpdateServerUrl") and get(opt, "UpdateServerUrl"):
        first.append(Entry(get(opt, "UpdateServerUrl")))
    only = bool(first) and bool(get(opt, "UseUpdateServerUrlOnly"))
    if only:
        return first, True
    list_file = get("updater.path", "ServerListFile") or str(SHIPPED_LIST)
    return first + read_list(Path(list_file)), False


class CoolDown:
    """Persisted ``{source: until}``; a source is skipped until ``until`` has passed."""

    def __init__(self, data: dict) -> None:
        now = time.time()
        self.until = {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and v > now}

    def active(self, source: str) -> float | None:
        until = self.until.get(source)
        return until if until and until > time.time() else None

    def start(self, source: str, seconds: float) -> float:
        self.until[source] = time.time() + seconds
        return self.until[source]

    def clear(self, source: str) -> None:
        self.until.pop(source, None)
