"""``smtpscanner quarantine list|show|release|delete`` (guide 5.2.2, 5.2.4).

Release hands the stored message to ForwardMailer for its original recipients (it does not go
through the scan again: the administrator decided).  An entry is removed only after the next hop
accepted every recipient.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from email.parser import BytesHeaderParser
from email.policy import compat32

from runtime.config import KavConfig
from runtime.filter.envelope import Recipient
from runtime.filter.forward import ForwardError, ForwardMailer, Outgoing
from runtime.filter.notify import one_line
from runtime.filter.quarantine import Quarantine, QuarantineError


def _dirs(cfg: KavConfig, path: str | None) -> list[Quarantine]:
    if path:
        return [Quarantine(path)]
    seen = dict.fromkeys(str(g.get("QuarantinePath")) for g in cfg.groups)
    return [Quarantine(p) for p in seen]


def _find(cfg: KavConfig, qid: str, path: str | None) -> Quarantine:
    for q in _dirs(cfg, path):
        if qid in q.ids():
            return q
    raise QuarantineError(f"{qid}: no such quarantine entry")


def run(cfg: KavConfig, args: argparse.Namespace) -> int:
    try:
        if args.qcmd == "list":
            for q in _dirs(cfg, args.path):
                for qid in q.ids():
                    e = q.load(qid)
                    m = e.meta
                    print(f"{qid}  {m.get('date', '')}  {m.get('status', '')}  <{e.sender}> -> "
                          f"{','.join(e.recipients)}  {one_line(str(m.get('subject', '')), 60)}")
            return 0
        q = _find(cfg, args.id, args.path)
        e = q.load(args.id)
        if args.qcmd == "show":
            if args.raw:
                sys.stdout.buffer.write(e.message)
                return 0
            for k in ("id", "date", "group", "status", "reason", "names", "msgid", "subject", "size"):
                if k in e.meta:
                    print(f"{k}: {e.meta[k]}")
            print(f"sender: <{e.sender}>")
            print(f"recipients: {', '.join(e.recipients)}")
            print()
            for k, v in BytesHeaderParser(policy=compat32).parsebytes(e.message).items():
                print(f"{k}: {one_line(str(v), 500)}")
            return 0
        if args.qcmd == "delete":
            q.delete(args.id)
            print(f"deleted {args.id}")
            return 0
        if args.qcmd == "release":
            return _release(cfg, q, e, keep=args.keep)
    except QuarantineError as exc:
        print(f"smtpscanner: {exc}", file=sys.stderr)
        return 1
    return 2


def _release(cfg: KavConfig, q: Quarantine, e, keep: bool) -> int:  # noqa: ANN001
    mailer = ForwardMailer(cfg.get("smtpscan.general", "ForwardMailer"),
                           timeout=float(cfg.get("smtpscan.limits", "MaxCheckTime")))

    async def go() -> dict:
        try:
            async with mailer.session() as s:
                return await s.send(Outgoing(e.sender, [Recipient(r) for r in e.recipients], e.message))
        finally:
            await mailer.close()

    try:
        res = asyncio.run(go())
    except ForwardError as exc:
        print(f"smtpscanner: release of {e.id} failed, entry kept: {exc}", file=sys.stderr)
        return 1
    bad = {r: str(v) for r, v in res.items() if not v.ok}
    if bad:
        print(f"smtpscanner: release of {e.id} refused for {bad}; entry kept", file=sys.stderr)
        return 1
    if not keep:
        q.delete(e.id)
    print(f"released {e.id} to {', '.join(e.recipients)}")
    return 0
