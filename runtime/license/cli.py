"""``licensemanager``: view, install and remove product keys; licence usage (guide 5.4.2, 3.3 step 2).

``-s`` all installed keys, ``-k FILE`` one key, ``-i`` licensed users / traffic, ``-a FILE``
install, ``-d SERIAL`` remove, ``--users`` (root) the protected addresses; for publishers
``--new-publisher DIR`` and ``--issue``.  Every refusal is one line on stderr and a non-zero exit.

The accounting store belongs to the filter's account: when root asks for ``-i``/``--users``, the
reading is done in a child that has dropped to the store's owner, so root never parses a file a
less privileged account can write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import sqlite3
import sys
from pathlib import Path

from runtime.config import CONFIG_FILE, ConfigError, KavConfig, load_config
from runtime.config.schema import PRODUCT_VERSION
from runtime.license import keyfile, publishers
from runtime.license.accounting import Accounting
from runtime.license.info import details, installed_line, key_line
from runtime.license.keyfile import KeyFileError
from runtime.license.keystore import KeyStore, StoreError, read_bounded
from runtime.license.policy import MB, day_start, fmt_units

BANNER = (f"kav4mailservers license manager version {PRODUCT_VERSION}\n"
          "Copyright (C) the kav4mailservers authors. Free software under the GPL 3 or later.")


class Failure(Exception):
    """One line for stderr, then exit 1."""


def as_owner(path: Path, fn):  # noqa: ANN001, ANN201
    """Run ``fn()`` as the owner of ``path`` when we are root and it is not; JSON-able result."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return fn()
    if os.geteuid() != 0 or st.st_uid == 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to the store's owner, compute, report
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(st.st_gid)
            os.setuid(st.st_uid)
            payload = json.dumps({"ok": fn()})
        except Exception as exc:  # noqa: BLE001
            payload, code = json.dumps({"error": str(exc)}), 1
        with os.fdopen(w, "w") as out:
            out.write(payload)
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    result = json.loads(data or '{"error": "reader died"}')
    if "error" in result:
        raise Failure(f"cannot read the accounting store {path}: {result['error']}")
    return result["ok"]


def accounting(cfg: KavConfig) -> Accounting:
    return Accounting(cfg.get("path", "LicenseStatePath"), readonly=True)


def cmd_show(cfg: KavConfig, today: dt.date) -> int:
    store = KeyStore.for_config(cfg)
    items = store.installed()
    if not items:
        print(f"No product key installed in {store.directory}")
        return 1
    for item in items:
        print(installed_line(item, today))
    return 0


def locate(cfg: KavConfig, name: str) -> Path:
    """``-k 0003D3EA.key`` works from anywhere: a bare name not in the cwd is looked up in LicensePath."""
    path = Path(name)
    if not path.exists() and path.parent == Path("."):
        candidate = Path(cfg.get("path", "LicensePath")) / name
        if candidate.exists():
            return candidate
    return path


def cmd_key(cfg: KavConfig, name: str, today: dt.date) -> int:
    path = locate(cfg, name)
    trusted, _ = publishers.for_config(cfg)
    try:
        key = keyfile.verify(read_bounded(path), trusted, check_dates=False)
    except OSError as exc:
        raise Failure(f"{path}: {exc.strerror or exc}") from None
    except KeyFileError as exc:
        raise Failure(f"{path}: {exc}") from None
    print(key_line(key, today))
    for line in details(key):
        print(line)
    try:
        key.check_dates(today)
    except KeyFileError as exc:
        raise Failure(f"{path}: {exc}") from None
    return 0


def cmd_info(cfg: KavConfig, today: dt.date) -> int:
    store = KeyStore.for_config(cfg)
    active = store.active(today)
    acc = accounting(cfg)
    since = day_start(active["users"].issued) if "users" in active else 0.0
    try:
        usage = as_owner(acc.path, lambda: acc.usage(since).__dict__)
    except sqlite3.Error as exc:
        raise Failure(f"cannot read the accounting store {acc.path}: {exc}") from None
    if not active:
        print(f"No valid product key installed in {store.directory}")
    if "users" in active or not active:
        units = active["users"].units if "users" in active else None
        print(f"License users units: {units if units is not None else 'none'}")
        print(f"Users units used: {usage['users']}")
        if units is not None:
            print(f"Users units left: {max(0, units - usage['users'])}")
    if "traffic" in active or not active:
        units = active["traffic"].units if "traffic" in active else None
        used = usage["today_bytes"] / MB
        print("Daily traffic statistic(Bytes):")
        print(",".join(str(b) for b in usage["hourly"]))
        print(f"License traffic units: {units if units is not None else 'none'} (MB)")
        print(f"Traffic units used: {fmt_units(round(used, 2))} (MB)")
        if units is not None:
            print(f"Traffic units left: {fmt_units(round(max(0.0, units - used), 2))} (MB)")
    for ktype, key in sorted(active.items()):
        if key.state(today) == "expired":
            print(f"Key {key.serial} ({ktype}) expired on {keyfile.fmt_date(key.expires)}")
    return 0


def cmd_users(cfg: KavConfig) -> int:
    acc = accounting(cfg)
    try:
        rows = as_owner(acc.path, acc.users)
    except sqlite3.Error as exc:
        raise Failure(f"cannot read the accounting store {acc.path}: {exc}") from None
    for address, first, last in rows:
        f = dt.datetime.fromtimestamp(first).strftime("%Y-%m-%d %H:%M")
        la = dt.datetime.fromtimestamp(last).strftime("%Y-%m-%d %H:%M")
        print(f"{address}\tfirst seen {f}\tlast seen {la}")
    print(f"{len(rows)} licensed users")
    return 0


def cmd_add(cfg: KavConfig, name: str, today: dt.date) -> int:
    store = KeyStore.for_config(cfg)
    path = Path(name)
    try:
        data = path.read_bytes()[: keyfile.MAX_SIZE + 1]
    except OSError as exc:
        raise Failure(f"{path}: {exc.strerror or exc}") from None
    try:
        key, target, replaced = store.install(data, today)
    except (KeyFileError, StoreError) as exc:
        raise Failure(f"{path}: {exc}; nothing installed") from None
    print(f"{'Replaced' if replaced else 'Installed'} {target}")
    print(key_line(key, today))
    return 0


def cmd_delete(cfg: KavConfig, which: str) -> int:
    try:
        path = KeyStore.for_config(cfg).remove(which)
    except StoreError as exc:
        raise Failure(str(exc)) from None
    print(f"Removed {path}")
    return 0


def cmd_issue(args: argparse.Namespace, today: dt.date) -> int:
    if not args.private_key:
        raise Failure("--issue needs --private-key FILE (a publisher key from --new-publisher)")
    try:
        private = publishers.load_private(Path(args.private_key))
    except (OSError, ValueError) as exc:
        raise Failure(f"{args.private_key}: {exc}") from None
    issued = dt.date.fromisoformat(args.issued) if args.issued else today
    if args.expires:
        expires = dt.date.fromisoformat(args.expires)
    else:
        expires = issued + dt.timedelta(days=args.days)
    serial = args.serial or f"{secrets.randbelow(0x10000):04X}-{secrets.randbelow(1000000):06d}-" \
                            f"{secrets.randbelow(0x100000000):08X}"
    try:
        data = keyfile.issue(private, serial=serial, ktype=args.type, units=args.units, issued=issued,
                             expires=expires, licensee=args.licensee, product=args.product)
    except ValueError as exc:
        raise Failure(str(exc)) from None
    out = Path(args.output or f"{serial.rsplit('-', 1)[1]}.key")
    from runtime.fsutil import atomic_write

    atomic_write(out, data, mode=0o644)
    print(f"Issued {out}: serial {serial}, {args.type} {args.units}, {issued} .. {expires}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="licensemanager",
                                 description="kav4mailservers product keys and licence usage (guide 5.4)")
    ap.add_argument("-c", "--config", default=os.environ.get("KAV_CONFIG", CONFIG_FILE),
                    help="configuration file (default %(default)s; env KAV_CONFIG)")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("-s", "--show", action="store_true", help="all installed keys")
    what.add_argument("-k", "--key", metavar="FILE", help="one key file (a bare name is looked up in LicensePath)")
    what.add_argument("-i", "--info", action="store_true", help="licensed users / traffic: units, used, left")
    what.add_argument("-a", "--add", metavar="FILE", help="verify and install a key into LicensePath")
    what.add_argument("-d", "--delete", metavar="SERIAL", help="remove an installed key (serial or file name)")
    what.add_argument("--users", action="store_true", help="list the licensed addresses (root only)")
    what.add_argument("--new-publisher", metavar="DIR", help="create a publisher key pair in DIR")
    what.add_argument("--issue", action="store_true", help="issue a key (publishers; needs --private-key)")
    iss = ap.add_argument_group("--issue")
    iss.add_argument("--private-key", metavar="FILE")
    iss.add_argument("--type", choices=keyfile.TYPES, default="users")
    iss.add_argument("--units", type=int, default=5)
    iss.add_argument("--issued", metavar="YYYY-MM-DD", help="first valid day (default today)")
    iss.add_argument("--expires", metavar="YYYY-MM-DD")
    iss.add_argument("--days", type=int, default=365, help="validity when --expires is not given")
    iss.add_argument("--licensee", default="unnamed licensee")
    iss.add_argument("--serial", help="NNNN-NNNNNN-NNNNNNNN (default random)")
    iss.add_argument("--product", default=keyfile.PRODUCT)
    iss.add_argument("-o", "--output", metavar="FILE", help="default: <serial's last group>.key")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    today = dt.date.today()
    print(BANNER)
    try:
        if args.new_publisher:
            priv, pub = publishers.new_publisher(Path(args.new_publisher))
            print(f"Publisher private key {priv} (keep it secret), public key {pub}")
            return 0
        if args.issue:
            return cmd_issue(args, today)
        if args.users and os.geteuid() != 0:
            raise Failure("--users lists the protected addresses and is for root only")
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            raise Failure(str(exc)) from None
        except OSError as exc:
            raise Failure(f"{args.config}: {exc.strerror or exc}") from None
        _, problems = publishers.for_config(cfg)
        for p in problems:
            print(f"licensemanager: warning: {p}", file=sys.stderr)
        if args.show:
            return cmd_show(cfg, today)
        if args.key:
            return cmd_key(cfg, args.key, today)
        if args.info:
            return cmd_info(cfg, today)
        if args.add:
            return cmd_add(cfg, args.add, today)
        if args.delete:
            return cmd_delete(cfg, args.delete)
        return cmd_users(cfg)
    except (Failure, FileExistsError, ValueError) as exc:
        print(f"licensemanager: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
