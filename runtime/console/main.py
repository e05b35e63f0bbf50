"""``kavconsole -c FILE [--listen ADDR:PORT]`` and ``kavconsole passwd USER [--role ...]`` (guide 4.3).

The console never serves as root: started by root (an init script, a unit without User=) it binds
its port, opens nothing else, and switches to [console] User before reading any request.  A
console that cannot drop its privileges refuses to start.
"""

from __future__ import annotations

import argparse
import getpass
import grp
import os
import pwd
import signal
import sys

from runtime import readiness
from runtime.config import CONFIG_FILE, ConfigError, load_config
from runtime.console import accounts


def drop_privileges(user: str) -> None:
    if os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise SystemExit(f"kavconsole: [console] User {user!r} does not exist; refusing to serve as root") from None
    if pw.pw_uid == 0:
        raise SystemExit("kavconsole: [console] User is root; the console never serves as root")
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
    os.setgroups(groups)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("kavconsole: could not drop root privileges")


def cmd_passwd(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except (ConfigError, OSError) as exc:
        if args.file is None:
            print(f"kavconsole: {exc}", file=sys.stderr)
            return 1
        cfg = None
    path = args.file or str(cfg.get("console", "PasswordFile"))  # type: ignore[union-attr]
    owner = None
    if os.geteuid() == 0 and cfg is not None:
        # root makes the file; the console (as [console] User) must be able to read it
        try:
            pw = pwd.getpwnam(str(cfg.get("console", "User")))
            owner = (pw.pw_uid, pw.pw_gid)
        except KeyError:
            print(f"kavconsole: warning: [console] User {cfg.get('console', 'User')!r} does not exist; "
                  f"{path} stays root's", file=sys.stderr)
    if args.stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"New password for {args.user}: ")
        if getpass.getpass("Again: ") != password:
            print("kavconsole: the passwords differ", file=sys.stderr)
            return 1
    try:
        accounts.set_password(path, args.user, password, args.role, owner)
    except (accounts.AccountError, OSError) as exc:
        print(f"kavconsole: {exc}", file=sys.stderr)
        return 1
    print(f"kavconsole: {args.user} ({args.role}) written to {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from runtime.console.app import Console, make_server

    try:
        console = Console(args.config)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"kavconsole: {exc}", file=sys.stderr)
        readiness.failed(exc)
        return 1
    listen = args.listen or str(console.cfg.get("console", "Listen"))
    try:
        server = make_server(console, listen)
    except (OSError, ValueError) as exc:
        print(f"kavconsole: cannot listen on {listen}: {exc}", file=sys.stderr)
        readiness.failed(exc)
        return 1
    readiness.connect()  # while still root: the starter's socket may be root's
    try:
        drop_privileges(str(console.cfg.get("console", "User")))
    except SystemExit as exc:
        readiness.failed(str(exc))
        raise

    def stop(_sig: int, _frame: object) -> None:
        # shutdown() waits for serve_forever: run it off the main thread
        import threading

        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda *_: console.reload_config())
    scheme = "https" if console.tls else "http"
    print(f"kavconsole: {scheme}://{listen}/ (config {console.config_path}, uid {os.getuid()})",
          file=sys.stderr, flush=True)
    readiness.ready(f"{scheme}://{listen}/")  # listening, and no longer root
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kavconsole", description="kav4mailservers web console (guide 4.3)")
    ap.add_argument("-c", "--config", default=CONFIG_FILE, help=f"configuration file (default {CONFIG_FILE})")
    ap.add_argument("--listen", help="ADDRESS:PORT (default: [console] Listen)")
    sub = ap.add_subparsers(dest="command")
    pw = sub.add_parser("passwd", help="add an account or set its password")
    pw.add_argument("user")
    pw.add_argument("--role", choices=accounts.ROLES, default="admin")
    pw.add_argument("--file", help="password file (default: [console] PasswordFile)")
    pw.add_argument("--stdin", action="store_true", help="read the password from standard input")
    args = ap.parse_args(argv)
    if args.command == "passwd":
        return cmd_passwd(args)
    return cmd_serve(args)


if __name__ == "__main__":
    sys.exit(main())
