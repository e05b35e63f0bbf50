"""``kavsetup install | uninstall | status | recover`` (guide 3.4, 4.4, chapter 7).

Exit codes: 0 done (or nothing to do), 1 failed (and rolled back), 2 refused before touching
anything (unsupported MTA version, existing content filter, bad answers), 3 another run holds the
lock.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kavsetup.commands import add_parser
from kavsetup.commands.outcome import err, exit_codes, recover_first, report
from kavsetup.detect import detect
from kavsetup.integrate.files import Root, View
from kavsetup.integrate.journal import JournalError
from kavsetup.integrate.settings import IntegrationSettings
from kavsetup.integrate.transaction import Transaction, root_lock


def register(sub: Any) -> None:
    p = add_parser(sub, "install")
    p.add_argument("--root", default="/", help="operate on DIR as if it were / (default: /)")
    p.add_argument("--mta", default="auto", choices=["auto", "postfix", "sendmail", "exim", "qmail"])
    p.add_argument("--dry-run", action="store_true", help="print the plan and a unified diff; change nothing")
    p.add_argument("--non-interactive", action="store_true", help="never ask; use defaults and --answers")
    p.add_argument("--answers", type=Path, action="append",
                   help="answers file, YAML or autoanswers.conf (keys: docs/setup.md); repeated: later files win")
    p.add_argument("--mta-config", default="", help="the MTA's main configuration file (in-root path)")
    p.add_argument("--chain", action="store_true", help="keep an existing Postfix content_filter after ours")
    p.add_argument("--force", action="store_true", help="integrate even an MTA version the guide does not support")
    p.add_argument("--save-answers", type=Path, metavar="FILE", help="on a terminal: write the answers given (YAML)")
    p.add_argument("--yes", action="store_true", help="on a terminal: apply without the final confirmation")
    p.set_defaults(func=cmd_install)
    u = add_parser(sub, "uninstall")
    u.add_argument("--root", default="/")
    u.add_argument("--dry-run", action="store_true")
    u.set_defaults(func=cmd_uninstall)
    s = add_parser(sub, "status")
    s.add_argument("--root", default="/")
    s.set_defaults(func=cmd_status)
    r = add_parser(sub, "recover")
    r.add_argument("--root", default="/")
    r.set_defaults(func=cmd_recover)


@exit_codes
def run_install(args: argparse.Namespace, *, fail_after: int | None = None, crash: Any = None) -> int:
    # Imported here, not at the top: uninstall, status and recover (same module) need none of
    # the compiler, the site facts or the configuration loader, and start faster without them.
    from kavsetup.commands.setup import given_answers, interactive, run_setup
    from kavsetup.conversation import converse
    from kavsetup.integrate.plan import compile_plan
    from kavsetup.integrate.verify import verify

    if interactive(args) and fail_after is None:
        return run_setup(args)    # guide 3.4: on a terminal, the console setup asks what is missing
    root = Root(args.root)
    if not root.path.is_dir():
        err(f"{args.root}: not a directory")
        return 2
    with root_lock(root):
        tx = Transaction(root, fail_after=fail_after, crash=crash)
        if not args.dry_run:
            recover_first(tx)
        if tx.pending_state() == "installed":
            doc = tx.journal.doc
            print(f"already integrated with {doc['mta']} (since {doc['started']}); nothing to do")
            return 0
        system = detect(root.path)
        # No terminal (or --non-interactive): defaults where safe, exit 2 naming what is missing.
        result = converse(root, system, given_answers(args), None, base=IntegrationSettings(chain=args.chain),
                          force=args.force)
        mta, settings = result.mta, result.settings
        if args.save_answers:
            from kavsetup.answers import save_yaml

            save_yaml(args.save_answers, {**given_answers(args), **result.answers})
        plan = compile_plan(system, settings, mta)
        for n in plan.notes:
            print(f"note: {n}")
        if args.dry_run:
            summaries, diff = plan.preview(View(root))
            for line in summaries:
                print(f"plan: {line}")
            sys.stdout.write(diff)
            print("dry run: nothing changed")
            return 0
        out = tx.apply(plan, verify=lambda: verify(root, mta, settings))
        code = report(out)
        if out.ok:
            print(tx.journal.doc.get("verification", ""))
            _after_change(root, mta.kind.value, "install")
        return code


def _after_change(root: Root, kind: str, phase: str) -> None:
    """The running MTA picks up the change (and, after uninstall, the mail it held for us)."""
    if not root.is_live:
        return  # an image or chroot (--root) has no running MTA to reload
    from kavsetup.detect.model import MTAKind
    from kavsetup.mta import integration

    if kind not in tuple(MTAKind):
        return
    for note in integration(kind).after_change(root, phase):
        print(f"note: {note}")


def _hand_back(root: Root, kind: str) -> None:
    """Before uninstall, an MTA integrated as a listening instance with its own queue (Exim,
    Sendmail) stops that instance and moves the mail it holds for scanning into its main queue, so
    that the uninstall strands nothing (issue 11 item 7); ``_after_change`` then has it delivered.
    Only the modules that keep such a queue define ``hand_back``."""
    if not root.is_live:
        return
    from kavsetup.detect.model import MTAKind
    from kavsetup.mta import integration

    hook = getattr(integration(kind), "hand_back", None) if kind in tuple(MTAKind) else None
    for note in hook(root) if hook else ():
        print(f"note: {note}")


def cmd_install(args: argparse.Namespace) -> int:
    return run_install(args)


@exit_codes
def cmd_uninstall(args: argparse.Namespace) -> int:
    root = Root(args.root)
    with root_lock(root):
        tx = Transaction(root)
        state = tx.pending_state()
        if state and state != "installed" and not args.dry_run:
            return report(tx.recover())
        if not args.dry_run and state == "installed":
            _hand_back(root, tx.journal.doc["mta"])
        out = tx.uninstall(dry_run=args.dry_run)
        code = report(out)
        if out.ok and not args.dry_run and state == "installed":
            _after_change(root, tx.journal.doc["mta"], "uninstall")
            # Only now, with the MTA no longer handing it mail and the mail held for it requeued,
            # the daemon the install started stops (and its unit is disabled if the install enabled it).
            from kavsetup import services

            for note in services.release(root, tx.journal.doc.get("services", [])):
                print(f"note: {note}")
        return code


def cmd_status(args: argparse.Namespace) -> int:
    root = Root(args.root)
    tx = Transaction(root)
    try:
        state = tx.pending_state()
    except JournalError as exc:
        err(str(exc))
        return 1
    if not state:
        print("not integrated: no kav4mailservers journal in this root")
        return 0
    doc = tx.journal.doc
    if state != "installed":
        print(f"INTERRUPTED: a run stopped in state {state!r}; run `kavsetup recover`")
        return 1
    print(f"integrated with {doc['mta']} since {doc['started']}; {len(doc['steps'])} steps")
    for st in doc["steps"]:
        changed = []
        for ch in st["changes"]:
            cur = root.read(ch["path"])
            mark = "" if cur.matches(ch["after"]) else " (changed since)"
            changed.append(ch["path"] + mark)
        if changed:
            print(f"  {st['n']:2d}. {st['summary']}: {', '.join(changed)}")
    return 0


@exit_codes
def cmd_recover(args: argparse.Namespace) -> int:
    root = Root(args.root)
    with root_lock(root):
        return report(Transaction(root).recover())
