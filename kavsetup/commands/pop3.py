"""``kavsetup pop3 add HOST USER PASSWORD LOCALUSER`` and ``kavsetup pop3 remove HOST USER
LOCALUSER``: the guide's 6.5 script, done safely (kavsetup/pop3.py says how).

PASSWORD ``-`` reads the password from standard input (all of it, one trailing newline dropped),
so it need not appear in the process list.  Exit status: 0 done (or nothing to do), 1 refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kavsetup.commands import add_parser


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = add_parser(subparsers, "pop3", description="Collect mail of external POP3 mailboxes with "
                        "fetchmail and hand it to the local SMTP server, where it is scanned (guide 6.5).")
    sub = parser.add_subparsers(dest="pop3_command", metavar="ACTION")
    sub.required = True
    add = sub.add_parser("add", help="add (or change the password of) an external mailbox")
    add.add_argument("host", metavar="HOST")
    add.add_argument("user", metavar="USER", help="login on HOST")
    add.add_argument("password", metavar="PASSWORD", help="'-' reads it from standard input")
    add.add_argument("local", metavar="LOCALUSER", help="local account that receives the mail")
    add.add_argument("--every", type=int, default=10, metavar="MIN", help="minutes between runs (default 10)")
    add.add_argument("--no-tls", action="store_true",
                     help="plain POP3 without STLS (a trusted network only; default: TLS when the server offers it)")
    rm = sub.add_parser("remove", help="remove an external mailbox")
    rm.add_argument("host", metavar="HOST")
    rm.add_argument("user", metavar="USER")
    rm.add_argument("local", metavar="LOCALUSER")
    for p in (add, rm):
        p.add_argument("--root", type=Path, default=Path("/"), metavar="DIR", help="work on DIR as if it were /")
        p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kavsetup import pop3

    try:
        if args.pop3_command == "add":
            password = args.password
            if password == "-":
                password = sys.stdin.read()
                password = password[:-1] if password.endswith("\n") else password
            done = pop3.add(args.root, pop3.Mailbox(args.host, args.user, password, args.local, tls=not args.no_tls),
                            args.every, args.dry_run)
        else:
            done = pop3.remove(args.root, args.host, args.user, args.local, args.dry_run)
    except pop3.Pop3Error as e:
        print(f"kavsetup pop3: {e}", file=sys.stderr)
        return 1
    for line in done:
        print(("dry run: " if args.dry_run else "") + line)
    return 0
