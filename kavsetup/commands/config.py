"""``kavsetup config defaults|check|show|set``: compile, check, inspect and edit the configuration."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kavsetup.commands import add_parser
from kavsetup.conffile import render_config
from runtime.config import ConfigError, load_config, parse_assignment, set_values
from runtime.layout import HOST, LAYOUTS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_parser(sub, "config")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True

    d = csub.add_parser("defaults", help="print the commented default configuration")
    d.add_argument("--layout", choices=sorted(LAYOUTS), default=HOST.name,
                   help="the OS the file is for (its paths; default this system's): a package built "
                        "elsewhere, e.g. the FreeBSD port's kav4mailservers.conf.sample")
    d.set_defaults(func=cmd_defaults)

    c = csub.add_parser("check", help="validate FILE; FILE:LINE messages and exit 1 when invalid")
    c.add_argument("file")
    c.add_argument("-q", "--quiet", action="store_true", help="do not print warnings")
    c.set_defaults(func=cmd_check)

    s = csub.add_parser("show", help="effective values after defaults and group resolution")
    s.add_argument("file")
    s.add_argument("--section", help="only this section (e.g. smtpscan.group:default)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_show)

    e = csub.add_parser("set", help="edit FILE in place: section.Key=value ...")
    e.add_argument("file")
    e.add_argument("assignments", nargs="+", metavar="section.Key=value")
    e.set_defaults(func=cmd_set)

    i = csub.add_parser("import", help="convert a 4.x/5.0 configuration into a 5.5 kav4mailservers.conf")
    i.add_argument("file", nargs="?", help="the old file (default: search the root for 5.0, then 4.x)")
    i.add_argument("--root", default="/", help="treat DIR as / when searching (default /)")
    i.add_argument("-o", "--output", help="write here (atomically, 0640) instead of standard output")
    i.set_defaults(func=cmd_import)


def cmd_defaults(args: argparse.Namespace) -> int:
    sys.stdout.write(render_config(layout=LAYOUTS[args.layout]))
    return 0


def _report(exc: ConfigError) -> int:
    for m in exc.messages:
        print(m, file=sys.stderr)
    return 1


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        return _report(exc)
    if not args.quiet:
        for w in [*cfg.warnings, *admin_mask_warnings(cfg)]:
            print(f"{w} (warning)", file=sys.stderr)
    return 0


#: The group whose mail passes unchanged (guide 6.1.1): membership must be exact.
ADMIN_GROUP = "kavadministrators"


def admin_mask_warnings(cfg: Any) -> list[str]:
    """An admin-group mask that is not anchored matches more than it says (issue 11): masks are
    searched like regexec(3), so ``root@.*`` also takes ``groot@...``. The guide's own examples
    keep that meaning (they are not rewritten); the admin is told, file, line and key."""
    out: list[str] = []
    section = f"smtpscan.group:{ADMIN_GROUP}"
    for key, setting in cfg.sections.get(section, {}).items():
        if key not in ("Recipients", "Senders"):
            continue
        for mask in setting.value:
            if not (mask.startswith("^") and mask.endswith("$") and not mask.endswith("\\$")):
                line = setting.lines[0] if setting.lines else None
                where = f"{cfg.filename}:{line}:" if line else f"{cfg.filename}:"
                out.append(f"{where} [{section}] {key}: mask {mask!r} is not anchored: it also matches addresses "
                           f"that merely contain it (write '^{mask.lstrip('^').rstrip('$')}$')")
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(_text(v) if not isinstance(v, tuple) else " ".join(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return str(value)


def cmd_show(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        return _report(exc)
    data = cfg.effective()
    if args.section:
        from runtime.config.schema import canonical_section

        name = canonical_section(args.section)[0]
        if name not in data:
            print(f"{args.file}: no section [{name}]", file=sys.stderr)
            return 1
        data = {name: data[name]}
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    for name, body in data.items():
        print(f"[{name}]")
        resolved = body.pop("resolved", None) if isinstance(body, dict) else None
        for key, value in body.items():
            print(f"{key}={_text(value)}")
        if resolved:
            print("# resolved per status (6.1.3): " + " ".join(next(iter(resolved.values())).keys()))
            for status, attrs in resolved.items():
                print(f"#   {status:<10} " + " ".join(f"{_text(v):<9}" for v in attrs.values()))
        print()
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    try:
        assignments = [parse_assignment(a, args.file) for a in args.assignments]
        changed = set_values(args.file, assignments)
    except ConfigError as exc:
        return _report(exc)
    except OSError as exc:
        print(f"{args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{args.file}: {'updated' if changed else 'unchanged'}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kavsetup import importer
    from runtime.fsutil import atomic_write

    if args.file:
        path = Path(args.file)
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            return 1
        result = importer.import_4x(path) if path.suffix.lower() == ".ini" else importer.import_50(path)
    else:
        result = importer.find_and_import(Path(args.root))
        if result.version is None:
            print(f"no 4.x or 5.0 installation found under {args.root}", file=sys.stderr)
            return 1
    for m in result.messages:
        print(f"{m} (not imported)" if "not imported" not in m.text else str(m), file=sys.stderr)
    try:
        text = render_config(result.settings, origin=f"imported from {result.version} {result.source}")
    except (ConfigError, KeyError) as exc:
        print(f"{result.source}: {exc}", file=sys.stderr)
        return 1
    if args.output:
        atomic_write(args.output, text.encode("utf-8"), mode=0o640)
        print(f"{args.output}: written from {result.source}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
