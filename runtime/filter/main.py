"""``smtpscanner``: the mail filter's entry point (guide 2.1, 4.4).

Modes, chosen by how it is started:

* standing daemon on ``[smtpscan.general] ListenAddress`` (``inet:host:port`` or ``unix:/path``);
* one session over stdin/stdout when the MTA spawns it (Postfix ``spawn``, Sendmail ``P=``, Exim
  ``lmtp`` transport ``command=``): chosen by ``--stdio``, ``ListenAddress=stdio``, or
  automatically when stdin is a socket or a pipe (so the guide's bare ``argv=.../smtpscanner``
  works);
* ``qmail-queue`` replacement (4.4.2): when called as ``qmail-queue`` or with ``qmail-queue``;
* ``quarantine list|show|release|delete`` for the administrator.

This module is only the command line: each mode imports what it uses (``serve`` for the SMTP
modes, ``qmailqueue``, ``quarantine_cli``), so a spawned ``--stdio`` session or a quarantine
listing does not load what it never runs.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys

from runtime import readiness
from runtime.config import CONFIG_FILE, ConfigError, load_config
from runtime.config.values import Listen
from runtime.prefork import StartupError, survive_early_hup
from runtime.report import EventLog

CONFIG_ENV = "KAV_CONFIG"


def stdin_is_channel() -> bool:
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.path.basename(sys.argv[0]) == "qmail-queue" and argv[:1] != ["qmail-queue"]:
        argv.insert(0, "qmail-queue")
    ap = argparse.ArgumentParser(prog="smtpscanner", description="kav4mailservers mail filter (guide 2.1, 6.1)")
    ap.add_argument("-c", "--config", default=os.environ.get(CONFIG_ENV, CONFIG_FILE),
                    help="configuration file (default %(default)s; env KAV_CONFIG)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="one session on stdin/stdout (spawned by the MTA)")
    mode.add_argument("--daemon", action="store_true", help="listen on ListenAddress even if stdin is a pipe")
    ap.add_argument("--listen", help="override [smtpscan.general] ListenAddress")
    ap.add_argument("--processes", type=int, default=1,
                    help="daemon: event-loop processes sharing the socket (default 1; more on many-core hosts)")
    sub = ap.add_subparsers(dest="command")
    sub.add_parser("qmail-queue", help="act as qmail-queue (message on fd 0, envelope on fd 1)")
    q = sub.add_parser("quarantine", help="list, show, release or delete quarantined messages")
    qs = q.add_subparsers(dest="qcmd", required=True)
    ql = qs.add_parser("list", help="one line per quarantined message")
    ql.add_argument("--path", help="quarantine directory (default: every group's QuarantinePath)")
    for name, helptext in (("show", "envelope, reason and headers"), ("release", "re-send to the original recipients"),
                           ("delete", "remove for good")):
        p = qs.add_parser(name, help=helptext)
        p.add_argument("id")
        p.add_argument("--path", help="quarantine directory")
        if name == "show":
            p.add_argument("--raw", action="store_true", help="print the whole message")
        if name == "release":
            p.add_argument("--keep", action="store_true", help="keep the entry after release")
    args = ap.parse_args(argv)
    spawned = args.command is None and (args.stdio or (not args.daemon and not args.listen and stdin_is_channel()))
    if args.command is None and not spawned:
        survive_early_hup()  # a standing daemon: a reload during start-up must not kill it
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        if spawned:  # the MTA reads our stdout: tell it why instead of dropping the connection
            from runtime.filter.refusal import refuse_session

            return refuse_session(str(exc), args.config)
        if args.command is None:
            readiness.failed(exc)
        return 55 if args.command == "qmail-queue" else 1
    if args.command == "quarantine":
        from runtime.filter.quarantine_cli import run

        return run(cfg, args)
    try:
        log = EventLog.from_config(cfg, "smtpscan.report")
    except OSError as exc:
        print(f"smtpscanner: cannot open event log: {exc}", file=sys.stderr)
        if spawned:
            from runtime.filter.refusal import refuse_session

            return refuse_session(f"cannot open event log: {exc}", args.config)
        if args.command is None:
            readiness.failed(exc)
        return 55 if args.command == "qmail-queue" else 1
    if args.command == "qmail-queue":
        from runtime.filter.qmailqueue import run_qmail_queue

        return run_qmail_queue(cfg, log)
    if args.listen:
        try:
            listen = Listen().parse(args.listen)
        except ValueError as exc:
            print(f"smtpscanner: --listen: {exc}", file=sys.stderr)
            return 1
    else:
        listen = cfg.get("smtpscan.general", "ListenAddress")
    if args.daemon and listen.kind == "stdio":  # --daemon and --stdio exclude each other
        # The unit (or a script) asked for a standing daemon, but the MTA spawns smtpscanner
        # (ListenAddress=stdio): nothing to serve, as the init script says; a service manager
        # waiting for readiness is told so rather than left to time out.
        why = "not needed: ListenAddress=stdio, the MTA starts smtpscanner for each connection"
        print(f"smtpscanner: {why}", file=sys.stderr)
        log.info(f"smtpscanner: {why}")
        readiness.ready(why)
        return 0
    from runtime.filter import serve

    if args.stdio or listen.kind == "stdio" or (not args.daemon and not args.listen and stdin_is_channel()):
        return serve.run_loop(serve.serve_stdio(cfg, log))
    processes = args.processes if args.processes > 0 else (os.cpu_count() or 1)
    try:
        if processes > 1:
            return serve.serve_prefork(cfg, log, listen, processes, os.path.abspath(args.config))
        return serve.run_loop(serve.serve_daemon(cfg, log, listen, config_path=os.path.abspath(args.config)))
    except StartupError as exc:
        log.fatal(f"smtpscanner: cannot start: {exc}")
        print(f"smtpscanner: cannot start: {exc}", file=sys.stderr)
        readiness.failed(exc)
        return 1

if __name__ == "__main__":
    sys.exit(main())
