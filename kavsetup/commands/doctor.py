"""``kavsetup doctor [--root DIR] [--json]``: is the whole mail path working, and if not, where
does it stop and what fixes it (kavsetup/doctor.py walks the links).

Exit status: 0 the EICAR test went through the MTA, the filter and reinjection and arrived in the
local mailbox scanned; 1 a link is broken (the report names the first, with the fix); 2 every link
checked is fine but the path was not proven end to end (``--static``, or a link that could not be
checked).  ``--json`` prints the same report for monitoring (docs/integration.md, "doctor").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kavsetup.commands import add_parser


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = add_parser(subparsers, "doctor", description="Send the EICAR test through the MTA, the filter and "
                        "reinjection to a local mailbox, and say where it stops (guide chapter 8, done for you).")
    parser.add_argument("--root", type=Path, default=Path("/"), metavar="DIR", help="the system at DIR")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--conf", default=None,
                        help="kav4mailservers.conf (a path inside the system; default: its OS's, "
                             "/etc/kav/5.5/kav4mailservers/kav4mailservers.conf or /usr/local/etc/kav/... on FreeBSD)")
    parser.add_argument("--to", default="root", metavar="USER",
                        help="local user whose mailbox (/var/mail/USER or ~/Maildir) receives the test (default root)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SEC",
                        help="how long to wait for the test to arrive (default 60)")
    parser.add_argument("--max-db-age", type=float, default=7.0, metavar="DAYS",
                        help="a database older than this is a broken link (default 7)")
    parser.add_argument("--mta", default="auto", choices=("auto", "postfix", "sendmail", "exim", "qmail"),
                        help="the mail server (default: the one detection finds active)")
    parser.add_argument("--mta-config", default="", metavar="FILE", help="its main configuration file")
    parser.add_argument("--static", action="store_true",
                        help="read the configuration only: no probes, no test message")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kavsetup.doctor import diagnose

    if not args.root.is_dir():
        print(f"kavsetup doctor: {args.root}: not a directory", file=sys.stderr)
        return 1
    report = diagnose(args.root, args.conf, static=args.static, to=args.to, timeout=args.timeout,
                      max_age_days=args.max_db_age, kind=args.mta, mta_config=args.mta_config)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    if report.ok:
        return 0
    return 1 if report.stopped_at is not None else 2
