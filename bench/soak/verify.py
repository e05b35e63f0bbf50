"""What arrived, checked against what was sent (issue 19 item 1).

Reads the real mbox files the MTA's local delivery wrote (/var/mail/alice for the recipient,
/var/mail/kavadmin for the administrator's notices) and the MTA's log, and decides per message:

* copies in the recipient's mailbox with its Message-ID: 1 is right, 0 is LOST, 2 is a duplicate
  that must have a cause in the log (the MTA says it handed the message to the filter again after
  a connection broke after the end of data: at-least-once delivery, never at-most-once), more is
  an error;
* every copy carries X-Anti-Virus (it went through the scanner, nothing bypassed it);
* clean and malformed mail: the body digest equals the sent one (the filter changed no byte);
* infected mail: no copy carries the EICAR file or the soak signature, and the administrator was
  notified (the default group's rules: RecipientAction=remove, AdminNotify=yes);
* protected archives: delivered with the archive as sent (5.2.3: delivered by default).
"""

from __future__ import annotations

import base64
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path

from bench.soak.corpus import EICAR, SOAK_MARKER, Spec, body_digest

_FROM_LINE = re.compile(rb"(?m)^From [^\n]*\n")
_BAD = (EICAR, base64.b64encode(EICAR)[:40], SOAK_MARKER)


def mbox_messages(path: Path) -> list[bytes]:
    """Messages of an mbox as local(8)/exim's appendfile write it (body lines "From " are quoted)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    parts = _FROM_LINE.split(data)
    return [p for p in parts[1:]]


@dataclass
class Copy:
    raw: bytes
    x_av: str
    digest: str


@dataclass
class Verdict:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    duplicates: list[tuple[int, str]] = field(default_factory=list)  # (seq, explanation)
    lost: list[int] = field(default_factory=list)


def _headers(raw: bytes) -> dict[str, str]:
    end = raw.find(b"\n\n")
    h = BytesHeaderParser().parsebytes(raw[: end + 1] if end >= 0 else raw)
    return {k.lower(): str(v) for k, v in h.items()}


# Not anchored: Exim's -H files prefix each header line with its length and a flag ("042I "),
# Sendmail's qf files with "H??".
_QUEUED_ID = re.compile(rb"(?i)Message-ID:\s*(<soak-[^>]*>)")


def queued_ids(spools: list[Path]) -> set[str]:
    """Message-IDs of the soak's messages still in the MTA's queue files (not delivered, not lost)."""
    out: set[str] = set()
    for spool in spools:
        for f in spool.rglob("*") if spool.exists() else []:
            try:
                if f.is_file():
                    out.update(m.decode() for m in _QUEUED_ID.findall(f.read_bytes()[:65536]))
            except OSError:
                continue
    return out


def check(sent: dict[int, tuple[Spec, str]], client: dict[str, dict], alice: Path, admin: Path,
          explain: Callable[[Spec], str], queued: set[str] | None = None,
          mta_rewrites: frozenset[str] = frozenset()) -> Verdict:
    """``sent``: seq -> (spec, body digest); ``client``: the clients' record per seq (as str keys);
    ``explain(spec)``: why a message arrived twice, from the MTA's log (or '' when it cannot say);
    ``queued``: Message-IDs still in the MTA's queue (undelivered, not lost); ``mta_rewrites``:
    malformed variants the MTA itself rewrites on local delivery, filter or not."""
    v = Verdict()
    by_id: dict[str, list[Copy]] = defaultdict(list)
    notices_by_subject: Counter[str] = Counter()
    known = {sp.message_id: seq for seq, (sp, _) in sent.items()}
    tokens = re.compile(rb"soak \d+-(\d+) ")
    for raw in mbox_messages(alice):
        h = _headers(raw)
        mid = h.get("message-id", "").strip()
        if mid in known:
            by_id[mid].append(Copy(raw, h.get("x-anti-virus", ""), body_digest(raw)))
        else:
            v.counts["recipient notices"] += 1
    for raw in mbox_messages(admin):
        for m in set(tokens.findall(raw)):
            notices_by_subject[m.decode()] += 1
        v.counts["admin notices"] += 1
    for seq, (sp, digest) in sorted(sent.items()):
        rec = client[str(seq)]
        v.counts["sent"] += 1
        if rec["attempts"] > 1:
            v.counts["client retries"] += rec["attempts"] - 1
        if not str(rec["reply"]).startswith("250"):
            v.counts["refused by the MTA (client gave up)"] += 1
            v.problems.append(f"{sp.message_id}: never accepted by the MTA: {rec['reply']}")
            continue
        v.counts["accepted by the MTA"] += 1
        copies = by_id.get(sp.message_id, [])
        if not copies and sp.message_id in (queued or set()):
            v.counts["still in the MTA's queue (not delivered yet)"] += 1
            v.problems.append(f"{sp.message_id} ({sp.kind}/{sp.variant}) still queued")
            continue
        if not copies:
            v.lost.append(seq)
            v.problems.append(f"LOST {sp.message_id} ({sp.kind}/{sp.variant}, {sp.size} B)")
            continue
        if len(copies) == 1:
            v.counts["delivered exactly once"] += 1
        elif len(copies) == 2:
            why = ("the client sent it twice: its connection broke after the end of data" if rec["ambiguous"]
                   else explain(sp))
            v.counts["delivered twice (explained)" if why else "delivered twice (UNEXPLAINED)"] += 1
            v.duplicates.append((seq, why or "UNEXPLAINED"))
            if not why:
                v.problems.append(f"{sp.message_id} delivered twice with no cause in the log")
        else:
            v.counts["delivered more than twice"] += 1
            v.problems.append(f"{sp.message_id} delivered {len(copies)} times")
        for c in copies:
            if not c.x_av:
                v.counts["copy without X-Anti-Virus"] += 1
                v.problems.append(f"{sp.message_id}: a copy without X-Anti-Virus (bypassed the scanner?)")
        if sp.kind in ("clean", "malformed"):
            ok = all(c.digest == digest for c in copies)
            if not ok and sp.variant in mta_rewrites:
                v.counts[f"{sp.kind}: body changed by the MTA itself ({sp.variant})"] += 1
                continue
            v.counts[f"{sp.kind}: body intact" if ok else f"{sp.kind}: body CHANGED"] += 1
            if not ok:
                v.problems.append(f"{sp.message_id} ({sp.kind}/{sp.variant}): body changed; X-Anti-Virus "
                                  f"{copies[0].x_av!r}")
        elif sp.kind == "infected":
            dirty = any(b in c.raw for c in copies for b in _BAD)
            notified = notices_by_subject.get(str(sp.seq), 0) > 0
            if dirty:
                v.problems.append(f"{sp.message_id} ({sp.variant}): infected object reached the mailbox")
            if not notified:
                v.problems.append(f"{sp.message_id} ({sp.variant}): no administrator notice")
            v.counts["infected: removed + admin notified" if not dirty and notified
                     else "infected: NOT handled by the group rules"] += 1
        elif sp.kind == "protected":
            ok = all(c.digest == digest for c in copies) or all(
                b"secret.zip" in c.raw and "protected" in c.x_av.lower() for c in copies)
            v.counts["protected: delivered as the rules say" if ok else "protected: CHANGED"] += 1
            if not ok:
                v.problems.append(f"{sp.message_id}: protected archive not delivered as sent; "
                                  f"X-Anti-Virus {copies[0].x_av!r}")
    return v
