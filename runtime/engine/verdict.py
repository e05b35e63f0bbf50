"""Scan results: per-object statuses (guide 6.2.2, 6.8.1), roll-up and aveclient exit codes.

A container's status is the worst status of anything inside it.  The order of "worse" is the one
that decides what the mail filter must do first: a virus outranks everything, then the two
heuristic verdicts, then objects we could not look into, then plain errors; a successful cure
only outranks a clean result.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any


def safe_name(name: str) -> str:
    """A member name fit for a report line: no control characters, no quotes, bounded length.

    Here rather than in containers.py, which names members with it: the mail filter names MIME
    parts the same way and should not load the unpackers (tarfile, zipfile, lzma) to do so."""
    cleaned = "".join(ch if ch.isprintable() and ch != '"' else "?" for ch in name)
    return cleaned[:255] or "?"


class Status(enum.StrEnum):
    """The result words of guide 6.8.1 (CLEAN is written ``OK`` in reports)."""

    CLEAN = "CLEAN"
    CURED = "CURED"
    ERROR = "ERROR"
    CORRUPTED = "CORRUPTED"
    PROTECTED = "PROTECTED"
    WARNING = "WARNING"
    SUSPICIOUS = "SUSPICIOUS"
    CUREFAILED = "CUREFAILED"
    INFECTED = "INFECTED"

    @property
    def report_word(self) -> str:
        """The word written in the event log (6.8.1: ``OK`` for a clean file)."""
        return "OK" if self is Status.CLEAN else self.value

    @property
    def config_name(self) -> str:
        """The spelling used in configuration keys (``Infected``, ``CureFailed`` ...)."""
        return {"CUREFAILED": "CureFailed"}.get(self.value, self.value.capitalize())


SEVERITY = {
    Status.CLEAN: 0,
    Status.CURED: 1,
    Status.ERROR: 2,
    Status.CORRUPTED: 3,
    Status.PROTECTED: 4,
    Status.WARNING: 5,
    Status.SUSPICIOUS: 6,
    Status.CUREFAILED: 7,
    Status.INFECTED: 8,
}

# aveclient's historical exit codes (docs/formats.md).  Chapter 8 calls SUSP- "unknown
# viral code" and WARN- "modified code of a known virus", hence SUSPICIOUS -> 2, WARNING -> 3.
EXIT_CODES = {
    Status.CLEAN: 0,
    Status.SUSPICIOUS: 2,
    Status.WARNING: 3,
    Status.INFECTED: 4,
    Status.CUREFAILED: 4,
    Status.CURED: 5,
    Status.PROTECTED: 6,
    Status.ERROR: 7,
    Status.CORRUPTED: 8,
}
EXIT_CANNOT_CONNECT = 1
EXIT_SYSTEM_ERROR = 7
EXIT_BAD_PARAMETERS = 9

# Statuses that carry a virus name in reports (6.8.1).
NAMED = {Status.CURED, Status.INFECTED, Status.CUREFAILED, Status.WARNING, Status.SUSPICIOUS}


def worst(statuses: list[Status] | tuple[Status, ...]) -> Status:
    """The status that rolls up to the container."""
    return max(statuses, key=SEVERITY.__getitem__, default=Status.CLEAN)


@dataclass
class ObjectResult:
    """One scanned object: ``path`` is the container path, e.g. ``archive.zip/dir/x.exe``."""

    path: str
    status: Status
    name: str = ""  # virus name, or the reason for ERROR/CORRUPTED/PROTECTED

    def report_line(self) -> str:
        """The 6.8.1 extended format: ``"file_name" result [virus_name]``."""
        tail = f" {self.name}" if self.name and self.status in NAMED else ""
        return f'"{self.path}" {self.status.report_word}{tail}'


@dataclass
class Verdict:
    """The answer for one top-level object.

    ``objects`` lists every object that is not clean (all objects when the caller asked for it);
    ``cured`` holds the disinfected bytes when a cure was requested and succeeded; ``deleted`` says
    the cure consisted in deleting the object (the EICAR DELE- variant), so it must be removed.
    """

    status: Status
    objects: list[ObjectResult] = field(default_factory=list)
    cured: bytes | None = None
    deleted: bool = False
    scanned: int = 0  # number of objects looked at (the top one and every member)
    path: str = ""

    @property
    def names(self) -> list[str]:
        """Virus names found, deduplicated, in order."""
        return list(dict.fromkeys(o.name for o in self.objects if o.name and o.status in NAMED))

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def clean(self) -> bool:
        return self.status is Status.CLEAN

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "path": self.path,
            "names": self.names,
            "objects": [{"path": o.path, "status": o.status.value, "name": o.name} for o in self.objects],
            "cured": self.cured is not None,
            "deleted": self.deleted,
            "scanned": self.scanned,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], cured: bytes | None = None) -> Verdict:
        return cls(
            status=Status(doc["status"]),
            objects=[ObjectResult(o["path"], Status(o["status"]), o.get("name", "")) for o in doc["objects"]],
            cured=cured,
            deleted=bool(doc.get("deleted")),
            scanned=int(doc.get("scanned", 0)),
            path=doc.get("path", ""),
        )

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()
