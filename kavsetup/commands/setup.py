"""``kavsetup setup`` and ``kavsetup reconfigure``: the console setup of guide 3.3/3.4.

``setup`` asks what detection could not decide (kavsetup/conversation.py), prints the plan and
its diff, asks for confirmation, then applies through the same journaled pipeline as
``kavsetup install`` (which runs this dialogue itself on a terminal).  ``reconfigure`` asks again
on an integrated system and replaces the integration in one locked change
(kavsetup/integrate/reconfigure.py).  Answers come from ``--answers`` (YAML or autoanswers.conf,
kavsetup/answers.py) and the flags; ``--save-answers`` writes them back for a later replay.

Exit codes as ``kavsetup install`` (docs/integration.md), plus 1 when the confirmation is
declined and 130 on Ctrl-C / end of input; in both cases nothing was written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kavsetup.answers import BY_KEY
from kavsetup.commands import add_parser
from kavsetup.commands.outcome import err, exit_codes, recover_first, report
from kavsetup.conversation import Cancelled, Console, Result, converse, post_actions
from kavsetup.detect import detect
from kavsetup.integrate.files import Root, View
from kavsetup.integrate.settings import IntegrationSettings
from kavsetup.integrate.transaction import Transaction, root_lock

INTRO = ("kav4mailservers setup (guide 3.3, 3.4).  Enter keeps the [default]; '?' explains a question; "
         "Ctrl-C leaves everything unchanged.  Nothing is written before you confirm.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default="/", help="operate on DIR as if it were / (default: /)")
    p.add_argument("--answers", type=Path, action="append",
                   help="answers file: setup.yaml or autoanswers.conf (docs/setup.md); repeated: later files win")
    p.add_argument("--save-answers", type=Path, metavar="FILE", help="write the answers given to FILE (YAML)")
    p.add_argument("--non-interactive", action="store_true", help="never ask; answers file, flags and defaults")
    p.add_argument("--mta", default=None, choices=["auto", "postfix", "sendmail", "exim", "qmail"])
    p.add_argument("--mta-config", default="", help="the MTA's main configuration file (in-system path)")
    p.add_argument("--chain", action="store_true", help="keep an existing Postfix content_filter after ours")
    p.add_argument("--force", action="store_true", help="integrate even an MTA version the guide does not support")
    p.add_argument("--dry-run", action="store_true", help="ask, print the plan and diff, change nothing")
    p.add_argument("--yes", action="store_true", help="apply without the final confirmation")


def register(sub: Any) -> None:
    p = add_parser(sub, "setup")
    add_arguments(p)
    p.set_defaults(func=cmd_setup)
    r = add_parser(sub, "reconfigure")
    add_arguments(r)
    r.set_defaults(func=cmd_reconfigure)


def interactive(args: argparse.Namespace) -> bool:
    return not args.non_interactive and sys.stdin.isatty() and sys.stdout.isatty()


def given_answers(args: argparse.Namespace) -> dict[str, Any]:
    """Answers file first, flags over it."""
    from kavsetup import answers

    given: dict[str, Any] = {}
    for path in args.answers or ():
        given.update(answers.load(path))
    if args.mta and args.mta != "auto":
        given["mta"] = args.mta
    if args.mta_config:
        given["mta_config"] = args.mta_config
    if args.chain:
        given["chain"] = True
    return given


def _show_plan(summaries: list[str], diff: str, notes: tuple[str, ...]) -> None:
    for n in notes:
        print(f"note: {n}")
    for line in summaries:
        print(f"plan: {line}")
    sys.stdout.write(diff)


def _save(args: argparse.Namespace, given: dict[str, Any], res: Result) -> None:
    if args.save_answers:
        from kavsetup import answers

        answers.save_yaml(args.save_answers, {**given, **res.answers})
        print(f"answers saved to {args.save_answers}")


def _finish(root: Root, tx: Transaction, res: Result, code: int) -> int:
    """After a successful apply: the checks' result, key and first update, what to do next."""
    if code != 0:
        return code
    print(tx.journal.doc.get("verification", ""))
    failures = post_actions(root, res, print)
    print(f"next: restart (or reload) {res.mta.kind.value} so it uses the new configuration (guide 3.4); "
          "'kavsetup status' shows the integration, 'kavsetup uninstall' undoes it")
    return 1 if failures else 0


@exit_codes
def run_setup(args: argparse.Namespace) -> int:
    from kavsetup.integrate.plan import compile_plan
    from kavsetup.integrate.verify import verify

    root = Root(args.root)
    if not root.path.is_dir():
        err(f"{args.root}: not a directory")
        return 2
    given = given_answers(args)
    console = Console() if interactive(args) else None
    with root_lock(root):
        tx = Transaction(root)
        if not args.dry_run:
            recover_first(tx)
        if tx.pending_state() == "installed":
            doc = tx.journal.doc
            print(f"already integrated with {doc['mta']} (since {doc['started']}); nothing to do "
                  "('kavsetup reconfigure' changes the answers)")
            return 0
        try:
            if console:
                console.write(INTRO)
            system = detect(root.path)
            res = converse(root, system, given, console, base=IntegrationSettings(chain=args.chain),
                           force=args.force)
            plan = compile_plan(system, res.settings, res.mta)
            _show_plan(*plan.preview(View(root)), plan.notes)
            _save(args, given, res)
            if args.dry_run:
                print("dry run: nothing changed")
                return 0
            if console and not args.yes and not console.confirm("Apply these changes?"):
                print("not applied: nothing was changed")
                return 1
        except Cancelled:
            err("setup cancelled: nothing was changed")
            return 130
        out = tx.apply(plan, verify=lambda: verify(root, res.mta, res.settings))
        return _finish(root, tx, res, report(out))


def cmd_setup(args: argparse.Namespace) -> int:
    return run_setup(args)


@exit_codes
def cmd_reconfigure(args: argparse.Namespace) -> int:
    from kavsetup.integrate import reconfigure
    from kavsetup.integrate.plan import compile_plan
    from kavsetup.integrate.verify import verify

    root = Root(args.root)
    console = Console() if interactive(args) else None
    with root_lock(root):
        tx = Transaction(root)
        state = tx.pending_state()
        if state != "installed":
            err("not integrated (no completed journal here); run 'kavsetup setup' first"
                 if not state else f"an interrupted run (journal state {state!r}): run 'kavsetup recover' first")
            return 2
        doc = tx.journal.load()
        overlay = reconfigure.pristine_overlay(tx)
        pristine = reconfigure.PristineRoot(root, overlay)
        system = detect(root.path, fs=reconfigure.PristineFS(root.path, overlay))
        known = set(IntegrationSettings.__dataclass_fields__)
        installed = {k: v for k, v in doc["settings"].items() if k in BY_KEY and k in known}
        new = given_answers(args)
        if new.get("mta", doc["mta"]) != doc["mta"]:
            installed.pop("mta_config", None)     # the old MTA's file: detection finds the new one's
        given = {"mta": doc["mta"], **installed, **new}
        try:
            if console:
                console.write(INTRO)
                console.write(f"Installed: integration with {doc['mta']} since {doc['started']}; "
                              "the current answers are the defaults.")
            res = converse(pristine, system, given, console, base=IntegrationSettings(chain=args.chain),
                           force=args.force, ask_all=True,
                           own_ports=(int(doc["settings"]["filter_port"]), int(doc["settings"]["reinject_port"])))
            plan = compile_plan(system, res.settings, res.mta)
            summaries, diff = reconfigure.preview(root, pristine, plan)
            _show_plan(summaries, diff, plan.notes)
            _save(args, given, res)
            if not diff:
                print("the answers give the integration already in place: nothing to change")
                return 0
            if args.dry_run:
                print("dry run: nothing changed")
                return 0
            if console and not args.yes and not console.confirm("Apply these changes?"):
                print("not applied: nothing was changed")
                return 1
        except Cancelled:
            err("reconfigure cancelled: nothing was changed")
            return 130
        out = reconfigure.apply(tx, plan, verify=lambda: verify(root, res.mta, res.settings))
        return _finish(root, tx, res, report(out))
