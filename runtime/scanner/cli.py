"""kavscanner: on-demand and scheduled scanning of server file systems (guide 5.3, 6.2, 6.3, 6.8).

Every command line the guide prints works as printed, glued forms included
(``-okavscanner-$(date +%F).log``, ``-pi/tmp/infected_archive.lst``, ``-@/tmp/download.lst``).
The guide uses several switches without explaining them; their meaning here is the one its tasks
describe and is listed with the guide section in ``man kavscanner`` (docs/man/kavscanner.1).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from runtime.config import ConfigError, KavConfig, load_config, loads_config
from runtime.config.schema import CONFIG_FILE
from runtime.engine.verdict import EXIT_CODES, NAMED, SEVERITY, Status, Verdict
from runtime.report import ACTIVITY, ERROR, INFO, WARNING, EventLog

from . import area as area_mod
from .ichecker import IChecker, database_version
from .report import Progress, Reporter, Sink, console_log
from .scan import Result, aveserver_client, default_workers, scan_many, scan_via_aveserver

if TYPE_CHECKING:
    from runtime.engine.engine import Engine

    from .actions import Executor

# The engine (Hyperscan, unpackers) and the encrypted stores (cryptography) are imported only when
# a file has to be scanned or acted upon: a scheduled run over an unchanged tree needs neither.

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_SYSTEM_ERROR = 7
EXIT_IO = 8
EXIT_BAD_PARAMETERS = 9
EXIT_INTERRUPTED = 130

EXIT_HELP = """\
exit codes (aveclient's, guide chapter 8; the worst result of the run decides):
  0  nothing found              5  everything found was disinfected
  1  fatal: the anti-virus      6  password-protected object(s)
     database cannot be loaded  7  scan error / an action failed
  2  suspicious object(s)       8  corrupted object(s) or unreadable file(s)
  3  warning (modified virus)   9  bad parameters or configuration
  4  infected object(s)       130  interrupted
"""

VERSION_TEXT = "kavscanner (kav4mailservers 5.5.0, clean-room re-creation of the KAV 5.5 scanner)"

# -e letters (6.2.1 "file types which will be scanned") and the [scanner.options] key of each.
E_FLAGS = {"P": "Packed", "A": "Archives", "S": "SelfExtArchives", "B": "MailBases", "M": "MailPlain",
           "E": "Heuristics"}


ARCHIVE_KINDS = frozenset({"zip", "tar", "gzip", "bzip2", "xz"})
MAIL_KINDS = frozenset({"mime", "uue"})
#: The default configuration when -c is not given: $KAV_CONFIG (as smtpscanner) or the installed file.
CONFIG_ENV = "KAV_CONFIG"


def skip_kinds(enabled: set[str]) -> frozenset[str]:
    """Container kinds the engine must not open for the enabled -e letters / [scanner.options] keys.

    A (Archives) governs zip/tar/gzip/bzip2/xz; mail (MIME, uuencode) is opened while either B
    (MailBases) or M (MailPlain) is on.  P, S and E have nothing to switch off in this engine: it
    has no unpacker for packed executables or self-extractors (their bytes are always matched
    whole), and WARNING/SUSPICIOUS verdicts come from the signatures themselves.
    """
    skip: set[str] = set()
    if "A" not in enabled:
        skip |= ARCHIVE_KINDS
    if "B" not in enabled and "M" not in enabled:
        skip |= MAIL_KINDS
    return frozenset(skip)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"kavscanner: {message}\n")
        sys.exit(EXIT_BAD_PARAMETERS)


def _level(text: str, lo: int, hi: int, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or not lo <= int(text) <= hi:
        raise argparse.ArgumentTypeError(f"{what} must be a number {lo}-{hi}, got {text!r}")
    return int(text)


def parser() -> _Parser:
    ap = _Parser(
        prog="kavscanner",
        description="Scan files and directories for viruses (guide 5.3). PATHs default to the current directory.",
        epilog=EXIT_HELP + "\nSee man kavscanner for the guide section of each switch.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("paths", nargs="*", metavar="PATH", help="files and directories to scan")
    ap.add_argument("-c", dest="config", metavar="FILE",
                    help=f"configuration file (default ${CONFIG_ENV} or {CONFIG_FILE})")
    ap.add_argument("-@", dest="list_file", metavar="FILE",
                    help="scan only the objects listed in FILE, one per line; - reads standard input (6.2.1)")
    ap.add_argument("-R", dest="recursion", action="store_const", const=True, help="recurse into directories")
    ap.add_argument("-r", dest="recursion", action="store_const", const=False,
                    help="do not recurse into directories (Recursion=no)")
    ap.add_argument("-l", dest="cross_fs", action="store_const", const=False,
                    help="stay on the file system of each PATH (CrossFs=no)")
    ap.add_argument("-L", dest="cross_fs", action="store_const", const=True,
                    help="also scan file systems mounted below a PATH (CrossFs=yes)")
    ap.add_argument("-q", dest="quiet", action="store_true", help="no output on the console (6.8.2)")
    ap.add_argument("-o", dest="report", metavar="FILE", help="write the report to FILE (6.8)")
    ap.add_argument("-i", dest="cure_mode", metavar="N", type=lambda t: _level(t, 0, 3, "-i"),
                    help="0 report only (Cure=no), 1-2 disinfect (Cure=yes), 3 disinfect and remove "
                         "what cannot be disinfected (6.2.2)")
    ap.add_argument("-j", dest="detail", metavar="N", type=lambda t: _level(t, 0, 4, "-j"),
                    help="objects written to the report: 0 none, 1 infected, 2 +suspicious/warning, "
                         "3 everything but OK, 4 everything (6.8.1)")
    ap.add_argument("-x", dest="console_detail", metavar="N", type=lambda t: _level(t, 0, 4, "-x"),
                    help="the same for the console (6.8.2)")
    ap.add_argument("-e", dest="types", metavar="PASBME",
                    help="object types: P packed, A archives, S self-extracting, B mail bases, M mail, "
                         "E heuristics (6.2.1)")
    ap.add_argument("-m", dest="formats", metavar="CnOn",
                    help="message format: C container / O object, then y short (result only) or n extended (6.8.1)")
    ap.add_argument("-p", dest="print_list", metavar="KFILE", action="append", default=[],
                    help="write the paths of objects of kind K to FILE: i infected, s suspicious, "
                         "w warning, c corrupted, p protected, e error, a all of these (5.3.3.1)")
    ap.add_argument("-w", "--workers", dest="workers", type=int, metavar="N",
                    help="files scanned in parallel (default [scanner.options] Workers, 0 = one per core)")
    ap.add_argument("--aveserver", dest="aveserver", action="store_const", const=True,
                    help="scan through the running aveserver ([path] LocalSocketPath), passing each open file "
                         "with AVE/1 SCANFD; in-process when none answers (UseAveserver=yes)")
    ap.add_argument("--in-process", dest="aveserver", action="store_const", const=False,
                    help="scan in forked worker processes of kavscanner itself (UseAveserver=no)")
    ap.add_argument("--follow-symlinks", action="store_const", const=True, dest="follow",
                    help="follow symbolic links inside the area (loops are detected)")
    ap.add_argument("--no-ichecker", dest="ichecker", action="store_false", default=None,
                    help="scan every file even if unchanged since found clean (6.3.1)")
    ap.add_argument("--ichecker-keep-verdicts", dest="keep_verdicts", action="store_const", const=True,
                    help="also remember infected/suspicious/... verdicts of unchanged files and report and act "
                         "on them again without rescanning (IcheckerKeepVerdicts=yes; cure still rescans)")
    ap.add_argument("--ichecker-clean-only", dest="keep_verdicts", action="store_const", const=False,
                    help="remember only clean files, as the guide describes (IcheckerKeepVerdicts=no, default)")
    ap.add_argument("--ichecker-db", metavar="FILE", help="iChecker database (default [path] IcheckerDbFile)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON document")
    ap.add_argument("--dry-run", action="store_true", help="scan and report, change nothing")
    ap.add_argument("--no-actions", action="store_true",
                    help="ignore the [scanner.object]/[scanner.container] rules; cure and -i3 still apply "
                         "(used by contrib/vox.sh inside an unpacked archive)")
    ap.add_argument("--restore", metavar="PATH|ID", help="restore a file from the backup storage (5.3.5)")
    ap.add_argument("--to", dest="restore_to", metavar="DEST", help="with --restore: write it here instead")
    ap.add_argument("--list-backup", action="store_true", help="list the backup storage (5.3.5)")
    ap.add_argument("--backup-dir", metavar="DIR", help="backup storage (default [scanner.path] BackupPath)")
    ap.add_argument("-v", "--version", action="version", version=VERSION_TEXT)
    return ap


def default_config() -> str:
    return os.environ.get(CONFIG_ENV) or CONFIG_FILE


def _load_cfg(path: str | None) -> KavConfig:
    if path:
        return load_config(path)
    if os.environ.get(CONFIG_ENV) or os.path.exists(CONFIG_FILE):
        return load_config(default_config())
    return loads_config("")


def _parse_formats(text: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    t = text
    while t:
        if len(t) < 2 or t[0].upper() not in "CO" or t[1].lower() not in "yn":
            raise ValueError(f"-m{text}: expected C or O followed by y or n, e.g. -mCn")
        out[t[0].upper()] = t[1].lower() == "y"
        t = t[2:]
    return out


def _parse_print(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for v in values:
        kind, path = v[:1].lower(), v[1:]
        if not kind or kind not in "iswcpea":
            raise ValueError(f"-p{v}: kind must be one of i s w c p e a")
        if not path:
            raise ValueError(f"-p{v}: missing file name")
        out.append((kind, path))
    return out


PRINT_KINDS = {
    "i": {Status.INFECTED, Status.CUREFAILED},
    "s": {Status.SUSPICIOUS},
    "w": {Status.WARNING},
    "c": {Status.CORRUPTED},
    "p": {Status.PROTECTED},
    "e": {Status.ERROR},
}
PRINT_KINDS["a"] = set().union(*PRINT_KINDS.values())


def _restore(args: argparse.Namespace, cfg: KavConfig) -> int:
    from .backup import Backup, BackupError, original_path

    bdir = args.backup_dir or cfg.get("scanner.path", "BackupPath")
    if not bdir:
        sys.stderr.write("kavscanner: no backup storage: set [scanner.path] BackupPath or --backup-dir\n")
        return EXIT_BAD_PARAMETERS
    b = Backup(bdir)
    if args.list_backup:
        for e in sorted(b.entries(), key=lambda e: str(e.meta.get("date", ""))):
            print(f"{e.id}  {e.meta.get('date', '')}  {int(e.meta.get('mode', 0)):04o} "  # type: ignore[arg-type]
                  f"{e.meta.get('uid')}:{e.meta.get('gid')}  {original_path(e)!r}  ({e.meta.get('reason', '')})")
        return EXIT_OK
    try:
        out = b.restore(args.restore, args.restore_to)
    except (BackupError, OSError) as exc:
        sys.stderr.write(f"kavscanner: {exc}\n")
        return EXIT_SYSTEM_ERROR
    print(f"restored {out!r}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = _load_cfg(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"kavscanner: {exc}\n")
        return EXIT_BAD_PARAMETERS
    except OSError as exc:
        sys.stderr.write(f"kavscanner: {args.config}: {exc.strerror}\n")
        return EXIT_BAD_PARAMETERS
    if args.restore or args.list_backup:
        return _restore(args, cfg)
    try:
        formats = _parse_formats(args.formats or "")
        prints = _parse_print(args.print_list)
        types = (args.types or "").upper()
        bad = [c for c in types if c not in E_FLAGS]
        if bad:
            raise ValueError(f"-e{args.types}: unknown object type {''.join(bad)!r} (use {''.join(E_FLAGS)})")
    except ValueError as exc:
        sys.stderr.write(f"kavscanner: {exc}\n")
        return EXIT_BAD_PARAMETERS
    return Run(args, cfg, formats, prints, types).run()


class _KeyInfoLog:
    """The event-log face ``log_key_info`` writes to, onto kavscanner's report and console sinks."""

    def __init__(self, rep: Reporter) -> None:
        self.rep = rep

    def info(self, line: str) -> None:
        self.rep.message(INFO, line)

    def warning(self, line: str) -> None:
        self.rep.message(WARNING, line)


class Run:
    """One scan: area -> workers -> verdicts -> report and actions -> statistics and exit code."""

    def __init__(self, args: argparse.Namespace, cfg: KavConfig, formats: dict[str, bool],
                 prints: list[tuple[str, str]], types: str) -> None:
        self.args, self.cfg, self.prints = args, cfg, prints
        opt = lambda k: cfg.get("scanner.options", k)  # noqa: E731
        self.short_object = formats.get("O", cfg.get("scanner.report", "ShowObjectResultOnly"))
        self.short_container = formats.get("C", cfg.get("scanner.report", "ShowContainerResultOnly"))
        cure_mode = args.cure_mode if args.cure_mode is not None else (2 if opt("Cure") else 0)
        self.cure = cure_mode >= 1
        self.remove_uncured = cure_mode == 3
        self.recursion = opt("Recursion") if args.recursion is None else args.recursion
        self.cross_fs = opt("CrossFs") if args.cross_fs is None else args.cross_fs
        self.follow = opt("FollowSymlinks") if args.follow is None else args.follow
        w = args.workers if args.workers is not None else opt("Workers")
        self.workers = w if w and w > 0 else default_workers()
        self.max_load = float(opt("MaxLoadAvg") or 0.0)
        self.use_ichecker = opt("UseIChecker") if args.ichecker is None else args.ichecker
        self.keep_verdicts = opt("IcheckerKeepVerdicts") if args.keep_verdicts is None else args.keep_verdicts
        self.remembered: list[tuple[str, os.stat_result, bytes]] = []
        self.via_aveserver = opt("UseAveserver") if args.aveserver is None else args.aveserver
        self.ave_records: object = None
        self.aveserver = ""  # the socket of the aveserver used for this run, once one answered
        self.retry: list[str] = []  # files aveserver could not scan: scanned in-process at the end
        if types:
            enabled = set(types)
        else:
            enabled = {letter for letter, key in E_FLAGS.items() if key == "Heuristics" or opt(key)}
        self.types = "".join(sorted(enabled))
        self.skip = skip_kinds(enabled)
        self.counts: dict[str, int] = {s.value: 0 for s in Status}
        self.stats = {"files": 0, "bytes": 0, "ichecker_skipped": 0, "ichecker_remembered": 0,
                      "special": 0, "links": 0, "excluded": 0,
                      "unreadable": 0, "cured": 0, "removed": 0, "moved": 0, "quarantined": 0,
                      "action_errors": 0, "paused_s": 0.0}
        self.walked = {"files": 0, "bytes": 0, "done": False}
        self.records: list[dict[str, Any]] = []
        self.worst: tuple[int, int] = (EXIT_OK, -1)
        self.print_files: dict[str, list[str]] = {}

    # -- output -------------------------------------------------------------------------------
    def _sinks(self) -> tuple[Reporter, EventLog | None]:
        cfg, args = self.cfg, self.args
        sinks: list[Sink] = []
        detail = args.detail if args.detail is not None else 3
        report_path = args.report if args.report is not None else cfg.get("scanner.report", "ReportFileName")
        file_log: EventLog | None = None
        if report_path:
            report_path = os.path.abspath(report_path)
            try:
                file_log = EventLog.from_config(cfg, "scanner.report", path=report_path)
                sinks.append(Sink(file_log, detail, self.short_object, self.short_container))
            except OSError as exc:
                if args.report is not None:
                    raise
                sys.stderr.write(f"kavscanner: cannot open the report {report_path}: {exc.strerror}; "
                                 "continuing without it (set -o FILE)\n")
        progress = None
        if not args.quiet and not args.json:
            display = "display" in getattr(cfg, "sections", {})
            cdetail = args.console_detail if args.console_detail is not None else detail
            show_ok = cfg.get("display", "ShowOK") if display else None
            short_c = cfg.get("display", "ShowContainerResultOnly") if display else self.short_container
            con = console_log()
            con.level = cfg.get("scanner.report", "ReportLevel")
            con.date_format, con.time_format = cfg.get("locale", "DateFormat"), cfg.get("locale", "TimeFormat")
            sinks.append(Sink(con, cdetail, self.short_object, short_c, show_ok, console=True))
            want_progress = cfg.get("display", "ShowProgress") if display else True
            if want_progress and sys.stdout.isatty():
                progress = Progress(sys.stdout)
        return Reporter(sinks, progress), file_log

    def _note_exit(self, code: int, sev: int) -> None:
        if sev > self.worst[1]:
            self.worst = (code, sev)

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> int:
        args, cfg = self.args, self.cfg
        try:
            rep, _ = self._sinks()
        except OSError as exc:
            sys.stderr.write(f"kavscanner: cannot open the report {args.report}: {exc.strerror}\n")
            return EXIT_BAD_PARAMETERS
        self.rep = rep
        t0 = time.monotonic()
        try:
            return self._run(rep, cfg, args, t0)
        except KeyboardInterrupt:
            rep.message(ERROR, "interrupted")
            return EXIT_INTERRUPTED
        finally:
            rep.close()

    def _run(self, rep: Reporter, cfg: KavConfig, args: argparse.Namespace, t0: float) -> int:
        rep.message(INFO, f"{VERSION_TEXT} started, pid {os.getpid()}")
        conf = args.config or (default_config() if os.path.exists(default_config()) else "built-in defaults")
        rep.message(INFO, f"configuration: {conf}")
        # 5.4.2: "each of them loads the information from the keys when they are launched" (as aveserver
        # and keepup2date do); a missing or expired key is a warning, scanning goes on (5.4).
        from runtime.license.info import log_key_info

        log_key_info(_KeyInfoLog(rep), cfg)
        self.bases = bases = cfg.get("path", "BasesPath")
        if not os.path.isdir(bases) and not os.path.isfile(bases):
            rep.message(0, f"cannot load the anti-virus database: {bases}: no such directory")
            return EXIT_FATAL
        version = database_version(bases)
        self.version = version
        # Paths: -@ wins over the command line (6.2.1).
        if args.list_file is not None:
            try:
                paths = area_mod.read_list(args.list_file)
            except OSError as exc:
                rep.message(0, f"cannot read the list {args.list_file}: {exc.strerror}")
                return EXIT_BAD_PARAMETERS
            if args.paths:
                rep.message(WARNING, f"-@ {args.list_file} given: the paths on the command line are ignored (6.2.1)")
        else:
            paths = args.paths or ["."]
        area = area_mod.Area(paths, recursion=self.recursion, cross_fs=self.cross_fs, follow_symlinks=self.follow,
                             exclude_masks=cfg.get("scanner.options", "ExcludeMask"),
                             exclude_dirs=cfg.get("scanner.options", "ExcludeDirs"))
        rep.message(INFO, "scan area: " + " ".join(f'"{p}"' for p in paths)
                    + f" (recursion {'on' if self.recursion else 'off'}, cure {'on' if self.cure else 'off'}"
                    + (", remove what cannot be cured" if self.remove_uncured else "")
                    + f", {self.workers} worker{'s' * (self.workers > 1)})")
        ick: IChecker | None = None
        if self.use_ichecker:
            dbfile = args.ichecker_db or cfg.get("path", "IcheckerDbFile")
            try:
                ick = IChecker(dbfile, self._ichecker_version(version))
                if ick.invalidated:
                    rep.message(INFO, f"iChecker {dbfile}: the database changed, every file is scanned again")
            except Exception as exc:  # noqa: BLE001 - sqlite errors, permissions: scan without it
                rep.message(WARNING, f"iChecker {dbfile} unusable ({exc}); scanning every file")
        self.ick = ick
        self.engine: Engine | None = None
        self._executor: Executor | None = None
        records: object = None
        try:
            if not self._scan(rep, area, ick):
                return EXIT_FATAL
            records = (self.engine.record_count if self.engine is not None else self.ave_records if self.aveserver
                       else ick.meta("records") if ick else None)
        finally:
            if ick is not None:
                ick.close()
        self._write_prints(rep)
        self._summary(rep, records, version, time.monotonic() - t0)
        if args.json:
            doc = {"summary": {**self.stats, "statuses": self.counts, "records": int(records or 0),
                               "database": version[:16], "exit_code": self.worst[0],
                               "seconds": round(time.monotonic() - t0, 3)},
                   "objects": self.records}
            sys.stdout.write(_json_document(doc))
        return self.worst[0]

    def _ichecker_version(self, version: str) -> str:
        """What every iChecker record holds under: the database and each setting that can change a
        verdict (-e object types, the scan limits).  Any difference drops every record."""
        from runtime.engine.limits import Limits

        return f"{version}|types={self.types}|limits={Limits.from_config(self.cfg)!r}"

    def _load_engine(self, rep: Reporter) -> Engine | None:
        from runtime.engine.engine import DatabaseError, Engine
        from runtime.engine.limits import Limits
        from runtime.engine.matcher import default_cache_dir

        try:
            engine = Engine.load(self.bases, Limits.from_config(self.cfg), default_cache_dir())
        except DatabaseError as exc:
            rep.message(0, f"cannot load the anti-virus database: {exc}")
            return None
        rep.message(INFO, f"anti-virus database {self.bases}: {engine.record_count} records, "
                          f"version {self.version[:16]}")
        if self.ick is not None:
            self.ick.set_meta("records", str(engine.record_count))
        return engine

    def _executor_for_run(self) -> Executor:
        if self._executor is None:
            from .actions import Executor, Policy
            from .backup import Backup

            cfg, args = self.cfg, self.args
            bdir = args.backup_dir or cfg.get("scanner.path", "BackupPath")
            self._executor = Executor(Policy(
                object_actions={} if args.no_actions else {k: cfg.get("scanner.object", k) for k in _ACTION_KEYS},
                container_actions={} if args.no_actions else {k: cfg.get("scanner.container", k)
                                                               for k in _ACTION_KEYS},
                cure=self.cure, remove_uncured=self.remove_uncured,
                backup=Backup(bdir) if bdir else None,
                quarantine_dir=cfg.group("default").get("QuarantinePath"),
                dry_run=args.dry_run,
            ))
        return self._executor

    def _feed(self, area: area_mod.Area, ick: IChecker | None, rep: Reporter):  # type: ignore[no-untyped-def]
        """Paths for the workers; everything else is counted and reported here (runs in the
        pool's feeder thread: it only appends to lists and logs)."""
        for e in area.walk():
            if e.kind == "file":
                if ick is not None and e.st is not None:
                    hit, doc = ick.lookup(e.path, e.st)
                    if hit and doc is None:
                        self.stats["ichecker_skipped"] += 1
                        rep.event(e.path, "OK", "(unchanged since last scan, iChecker)", 4, ACTIVITY)
                        continue
                    if hit and doc is not None and self.keep_verdicts and not self.cure:
                        # Reported and acted upon in the main thread (_replay), after the scan.
                        self.remembered.append((e.path, e.st, doc))
                        continue
                self.walked["files"] += 1
                self.walked["bytes"] += e.size
                yield e.path
            elif e.kind == "special":
                self.stats["special"] += 1
                rep.event(e.path, "SKIPPED", f"({e.what}: not a regular file)", 4, ACTIVITY)
            elif e.kind == "link":
                self.stats["links"] += 1
                rep.event(e.path, "SKIPPED", "(symbolic link not followed)", 4, ACTIVITY)
            elif e.kind == "excluded":
                self.stats["excluded"] += 1
                rep.event(e.path, "SKIPPED", f"(excluded{': ' + e.what if e.what else ''})", 4, ACTIVITY)
            else:
                self._unreadable(rep, e.path, e.what)
        self.walked["done"] = True

    def _unreadable(self, rep: Reporter, path: str, why: str) -> None:
        self.stats["unreadable"] += 1
        rep.event(path, "ERROR", f"cannot read: {why}", 3, ERROR)
        self.records.append({"path": path, "status": "ERROR", "error": f"cannot read: {why}"})
        self._note_exit(EXIT_IO, SEVERITY[Status.CORRUPTED])

    def _scan(self, rep: Reporter, area: area_mod.Area, ick: IChecker | None) -> bool:
        """Scan what the area yields; False when the database could not be loaded."""
        feed = self._feed(area, ick, rep)
        first = next(feed, None)
        if first is None:
            self.walked["done"] = True
            self._replay(rep, ick)
            return True  # nothing new to scan (an unchanged tree under iChecker): no engine needed
        results = self._via_aveserver(rep, chain([first], feed))
        if results is None:
            engine = self.engine = self._load_engine(rep)
            if engine is None:
                return False
            results = scan_many(engine, chain([first], feed), self.cure, self.workers, self.max_load, self.skip)
        if not self._results(rep, ick, results):
            return False
        self._replay(rep, ick)
        return True

    def _via_aveserver(self, rep: Reporter, paths: Iterator[str]) -> Iterator[Result] | None:
        """The results through a running aveserver (UseAveserver=yes, --aveserver), or None: scan
        in-process.  Not with -e limiting the object types: SCANFD has no way to say them."""
        if not self.via_aveserver:
            return None
        sock = self.cfg.get("path", "LocalSocketPath")
        if self.skip:
            rep.message(INFO, f"-e{self.types}: object types aveserver cannot be told; scanning in-process")
            return None
        client = aveserver_client(sock)
        if client is None:  # a warning only when asked for on the command line; else the quiet fallback
            level = WARNING if self.args.aveserver else INFO
            rep.message(level, f"no aveserver answers at {sock}; scanning in-process")
            return None
        try:
            info = client.version()
        except Exception as exc:  # noqa: BLE001 - answered PING but not VERSION: not usable
            rep.message(WARNING, f"aveserver at {sock} unusable ({exc}); scanning in-process")
            return None
        finally:
            client.close()
        self.aveserver = sock
        self.ave_records = info.get("records")
        rep.message(INFO, f"scanning through aveserver at {sock} (AVE/1 SCANFD): {info.get('records')} records, "
                          f"database {info.get('database')}")
        if self.ick is not None and self.ave_records is not None:
            self.ick.set_meta("records", str(self.ave_records))
        return scan_via_aveserver(sock, paths, self.cure, self.workers, self.max_load)

    def _results(self, rep: Reporter, ick: IChecker | None, results: Iterable[Result]) -> bool:
        """Handle each result; files aveserver could not scan are scanned in-process at the end."""
        for r in results:
            if r.retry:
                self.retry.append(r.path)
                continue
            self.stats["paused_s"] += r.paused
            if r.skipped:
                self.stats["links" if r.skipped == "link" else "special"] += 1
                rep.event(r.path, "SKIPPED", f"({r.skipped}: not a regular file when opened)", 4, ACTIVITY)
                continue
            if r.error or r.verdict is None or r.st is None:
                self._unreadable(rep, r.path, r.error or "unknown error")
                continue
            self.stats["files"] += 1
            self.stats["bytes"] += r.st.st_size
            if rep.progress is not None:
                w = self.walked
                rep.progress.draw(self.stats["files"], self.stats["bytes"], w["files"] if w["done"] else None,
                                  w["bytes"] if w["done"] else None)
            self._verdict(rep, ick, r.path, r.st, r.verdict)
        if self.retry:
            retry, self.retry = self.retry, []
            rep.message(INFO, f"{len(retry)} file(s) aveserver did not scan (too large, name, connection): "
                              "scanning them in-process")
            engine = self.engine = self.engine or self._load_engine(rep)
            if engine is None:
                return False
            return self._results(rep, ick, scan_many(engine, retry, self.cure, self.workers, self.max_load,
                                                     self.skip))
        return True

    def _replay(self, rep: Reporter, ick: IChecker | None) -> None:
        """IcheckerKeepVerdicts=yes: unchanged files whose remembered verdict stands in for a scan.
        They are reported, counted and acted upon exactly as if just scanned (6.2.3)."""
        for path, st, doc in self.remembered:
            self.stats["ichecker_remembered"] += 1
            self._verdict(rep, ick, path, st, Verdict.from_json(json.loads(doc)), remembered=doc)
        self.remembered.clear()

    def _verdict(self, rep: Reporter, ick: IChecker | None, path: str, st: os.stat_result, v: Verdict,
                 remembered: bytes = b"") -> None:
        """One file's verdict: counts, report, actions, the iChecker record and the -p lists.
        ``remembered``: the stored verdict this one was read from (kept as is, not written again)."""
        self.counts[v.status.value] += 1
        if v.status is Status.CLEAN:
            if ick is not None:
                ick.record_clean(path, st)
            self._note_exit(EXIT_OK, 0)
            rep.verdict(v)
            if self.args.json and (self.args.detail or 0) >= 4:
                self.records.append({"path": path, "status": "CLEAN"})
            return
        out = self._executor_for_run().apply(path, st, v)
        if ick is not None:
            if self.keep_verdicts and _replayable(v) and not (out.gone or out.cured):
                ick.record_verdict(path, st, remembered or v.dumps())
            else:
                ick.forget(path)
        for e in out.errors:
            rep.message(ERROR, f'"{path}": {e}')
        self.stats["cured"] += out.cured
        self.stats["removed"] += out.removed
        self.stats["moved"] += out.moved
        self.stats["quarantined"] += out.quarantined
        self.stats["action_errors"] += bool(out.errors)
        rep.verdict(v, out.done + out.errors)
        self._note_exit(EXIT_CODES[v.status], SEVERITY[v.status])
        if out.errors:
            self._note_exit(EXIT_SYSTEM_ERROR, SEVERITY[Status.ERROR])
        for kind, _ in self.prints:
            if v.status in PRINT_KINDS[kind]:
                self.print_files.setdefault(kind, []).append(path)
        self.records.append({"path": path, "status": v.status.value, "names": v.names,
                             "container": any(o.path != v.path for o in v.objects),
                             "objects": [{"path": o.path, "status": o.status.value,
                                          "name": o.name if o.status in NAMED else "", "reason": o.name}
                                         for o in v.objects],
                             "actions": out.done, "errors": out.errors,
                             **({"remembered": True} if remembered else {})})

    def _write_prints(self, rep: Reporter) -> None:
        from runtime.fsutil import atomic_write

        for kind, path in self.prints:
            names = self.print_files.get(kind, [])
            # One path per line; a newline or backslash inside a name is escaped so lines stay paths.
            text = "".join(n.replace("\\", "\\\\").replace("\n", "\\n") + "\n" for n in names)
            try:
                atomic_write(os.path.abspath(path), text.encode("utf-8", "surrogateescape"), mode=0o600)
            except OSError as exc:
                rep.message(ERROR, f"cannot write the list {path}: {exc.strerror}")
                self._note_exit(EXIT_SYSTEM_ERROR, SEVERITY[Status.ERROR])

    def _summary(self, rep: Reporter, records: object, version: str, seconds: float) -> None:
        s = self.stats
        rate = s["bytes"] / seconds / 1e6 if seconds > 0 else 0.0
        rep.message(INFO, f"scanned {s['files']} files, {s['bytes'] / 1e6:.1f} MB in {seconds:.1f} s "
                          f"({rate:.1f} MB/s); unchanged since last scan (iChecker) {s['ichecker_skipped']}"
                          + (f", remembered verdicts {s['ichecker_remembered']}" if s["ichecker_remembered"] else ""))
        rep.message(INFO, "results: " + ", ".join(f"{Status(k).report_word} {n}" for k, n in self.counts.items()))
        rep.message(INFO, f"skipped: special files {s['special']}, links not followed {s['links']}, "
                          f"excluded {s['excluded']}, unreadable {s['unreadable']}")
        rep.message(INFO, f"actions: disinfected {s['cured']}, removed {s['removed']}, moved {s['moved']}, "
                          f"quarantined {s['quarantined']}, failed {s['action_errors']}")
        if s["paused_s"]:
            rep.message(INFO, f"paused {s['paused_s']:.1f} s while the load average was above MaxLoadAvg (6.3.2)")
        rep.message(INFO, f"signatures: {records if records is not None else 'unknown'} records, "
                          f"database version {version[:16]}; "
                          f"exit code {self.worst[0]}")


def _json_document(doc: dict[str, Any]) -> str:
    """The --json document, one object per line: readable with ``grep``, and every ``dumps`` call
    without ``indent`` so it runs in the C encoder (``indent`` falls back to the pure-Python one,
    which took seconds for a tree with many infected archives)."""
    dumps = functools.partial(json.dumps, ensure_ascii=False)
    head = dumps({k: v for k, v in doc.items() if k != "objects"})[:-1]
    objs = ",\n ".join(dumps(o) for o in doc.get("objects", []))
    return f'{head}, "objects": [\n {objs}\n]}}\n' if objs else f'{head}, "objects": []}}\n'


#: Verdicts IcheckerKeepVerdicts may remember: the same bytes under the same database and settings
#: give them again.  Not ERROR (a time limit or a read failure may pass next time), not CURED or
#: CUREFAILED (a cure run always rescans: it needs the engine's disinfected bytes).
REPLAYABLE = frozenset({Status.INFECTED, Status.SUSPICIOUS, Status.WARNING, Status.CORRUPTED, Status.PROTECTED})


def _replayable(v: Verdict) -> bool:
    return v.status in REPLAYABLE and all(o.status is not Status.ERROR for o in v.objects)


_ACTION_KEYS = ("OnInfected", "OnSuspicion", "OnWarning", "OnCorrupted", "OnProtected", "OnError")

