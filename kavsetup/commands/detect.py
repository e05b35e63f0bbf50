"""``kavsetup detect [--root DIR] [--json] [--force]``: the read-only report of guide 3.4's first
step — the OS, each MTA, its version against guide 1.2, its files, the accounts.

Exit status: 0; 2 when the MTA that would be integrated (the active one, or every installed one
when none is active) fails the version gate and ``--force`` was not given; 1 when DIR is not
a directory.  Problems found while reading (an unreadable file, a broken symlink, an unknown
OS) are listed but do not change the status: detection is a report, not a check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kavsetup.commands import add_parser
from kavsetup.detect import EXIT_UNSUPPORTED, GateResult, MTAInfo, MTAKind, System, check_version, detect


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = add_parser(
        subparsers, "detect",
        description="Find the operating system, the installed MTAs, which one is active, their "
                    "versions (checked against guide 1.2) and configuration files.")
    parser.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                        help="inspect DIR as if it were / (an image, a chroot, a build root)")
    parser.add_argument("--json", action="store_true", help="print JSON (schema: docs/detect.md)")
    parser.add_argument("--force", action="store_true",
                        help="exit 0 even when the MTA version is outside guide 1.2's requirements")
    parser.set_defaults(func=run)


def gated(system: System) -> list[tuple[MTAInfo, GateResult]]:
    """The MTAs that integration would touch, with their gate results."""
    targets = [system.active] if system.active is not None else [m for m in system.mtas if m.installed]
    return [(m, check_version(m)) for m in targets]


def run(args: argparse.Namespace) -> int:
    root: Path = args.root
    if not root.is_dir():
        print(f"kavsetup detect: {root}: not a directory", file=sys.stderr)
        return 1
    system = detect(root)
    if args.json:
        print(system.to_json())
    else:
        print(render(system))
    refused = [g for _, g in gated(system) if not g.ok]
    if refused and not args.force:
        for gate in refused:
            print(f"kavsetup detect: {gate.message}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    return 0


def render(system: System) -> str:
    """The human-readable report."""
    os_ = system.os
    lines = [f"Root:        {system.root}",
             f"OS:          {os_.pretty}" + (f" (from {os_.source})" if os_.source else ""),
             f"             id={os_.id} version={os_.version or '?'} family={os_.family.value} "
             f"init={os_.init.value} packages={os_.pkg_format.value}"]
    if not system.mtas:
        lines.append("MTA:         none found (looked for postfix, sendmail, exim, qmail)")
    for mta in system.mtas:
        gate = check_version(mta)
        state = "active" if mta.active else ("installed" if mta.installed else "package only")
        version = f"{mta.version} (from {mta.version_source})" if mta.version else "unknown"
        lines.append(f"MTA:         {mta.kind.value} [{state}] version {version}"
                     + (f", package {mta.package}" if mta.package else ""))
        lines.append(f"  gate:      {'OK' if gate.ok else 'UNSUPPORTED'}: {gate.message}")
        if mta.binary:
            lines.append(f"  binary:    {mta.binary}")
        lines.extend(_details(mta))
    if system.active is not None:
        lines.append(f"Active:      {system.active.kind.value} ({system.active_reason})")
    users = system.users
    kluser = users.kluser
    flt = users.filter_group
    lines.append("Accounts:    kluser " + (f"uid {kluser.uid}" if kluser else "absent")
                 + ", group filter " + (f"gid {flt.gid}" if flt else "absent")
                 + (f", MTA user {users.mta_user.name} uid {users.mta_user.uid}" if users.mta_user else ""))
    present = [u.name for u in users.users if u.name != "kluser"]
    if present:
        lines.append(f"             present: {', '.join(present)}")
    if system.package_db_note:
        lines.append(f"Packages:    {system.package_db_note}")
    if system.problems:
        lines.append("Problems:")
        lines.extend(f"  {p}" for p in system.problems)
    return "\n".join(lines)


def _details(mta: MTAInfo) -> list[str]:
    out: list[str] = []
    if mta.kind is MTAKind.POSTFIX:
        p = mta.postfix
        out += [f"  main.cf:   {p.main_cf}" + ("" if p.main_cf_exists else " (missing)"),
                f"  master.cf: {p.master_cf}" + ("" if p.master_cf_exists else " (missing)"),
                f"  dirs:      config {p.config_directory}, daemon {p.daemon_directory or '?'}, "
                f"command {p.command_directory or '?'}, queue {p.queue_directory}",
                f"  via:       {'postconf' if p.postconf_ran else 'files'}; mail_owner {p.mail_owner}, "
                f"setgid_group {p.setgid_group}"]
        if p.content_filter:
            out.append(f"  content_filter already set: {p.content_filter}")
    elif mta.kind is MTAKind.SENDMAIL:
        s = mta.sendmail
        out += [f"  sendmail.cf: {s.sendmail_cf}" + ("" if s.sendmail_cf_exists else " (missing)"),
                f"  submit.cf:   {s.submit_cf or 'none'}",
                f"  mc:          {s.mc or 'none'}; submit mc: {s.submit_mc or 'none'}"]
    elif mta.kind is MTAKind.EXIM:
        e = mta.exim
        layout = {True: "Debian split (conf.d)", False: "Debian unsplit (template)", None: "single file"}
        out += [f"  config:    {e.config_file or 'not found'}",
                f"  layout:    {layout[e.debian_split]}"
                + (f", from {', '.join(map(str, e.debian_sources))}" if e.debian_sources else "")]
        if e.update_conf:
            out.append(f"  debconf:   {e.update_conf}")
    else:
        q = mta.qmail
        mode = f"{q.qmail_queue_mode:04o}" if q.qmail_queue_mode is not None else "?"
        out += [f"  home:      {q.home}",
                f"  qmail-queue: {q.qmail_queue} ({q.qmail_queue_owner or '?'}:{q.qmail_queue_group or '?'} "
                f"{mode})" + (" ALREADY WRAPPED" if q.already_wrapped else ""),
                f"  control:   {q.control_dir} ({', '.join(q.control_files) or 'empty'})",
                f"  postmaster: {q.postmaster_alias or 'no alias file'}"
                + (f" -> {', '.join(q.postmaster_targets)}" if q.postmaster_targets else "")]
    return out
