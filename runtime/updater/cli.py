"""``keepup2date``: update the anti-virus databases (guide 5.1, 5.1.2-5.1.5, report format 6.8).

Switches are the guide's: ``-c FILE`` another configuration, ``-l FILE`` the report, ``-u RDIR``
make a local mirror (itself a valid source for ``-g``), ``-g DIR|URL`` the update source, ``-q``
quiet; plus ``--rollback`` to put the previous set back.  See docs/man/keepup2date.8.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from runtime.config import load_config
from runtime.config.schema import CONFIG_FILE
from runtime.engine.bases import key_from_config
from runtime.report import EventLog

from . import codesign, install
from .fetch import Options, Source, display_url
from .sources import CoolDown, ordered
from .update import Context, Staged, UpdateFailed, stage_from, try_sources

CERTS_DIR = "certs"
OK, USAGE, SOURCES_FAILED, LOCKED, LICENCE, NO_BACKUP, POSTCMD = 0, 1, 2, 3, 4, 5, 6
EXIT_CODES = f"""exit status:
  {OK}  the databases are current (updated, or nothing new; the report says which)
  {USAGE}  usage or configuration error (the message names file, line and key)
  {SOURCES_FAILED}  no source gave a verified, loadable set (each source's reason is in the report);
     the installed databases are unchanged and aveserver keeps using them
  {LOCKED}  another keepup2date is running on the same BasesPath
  {LICENCE}  the update source requires a valid product key and there is none (guide 5.4)
  {NO_BACKUP}  --rollback: no previous set in BackUpPath, or it failed its load test
  {POSTCMD}  the new set is installed but PostUpdateCmd failed (aveserver still runs the old set)
"""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="keepup2date",
        description="kav4mailservers anti-virus database updater (guide 5.1): downloads, verifies, load-tests "
                    "and installs new databases, then makes aveserver reload.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", dest="config", default=CONFIG_FILE, metavar="FILE",
                    help="configuration file (default %(default)s)")
    ap.add_argument("-l", dest="report", metavar="FILE", help="write the report to FILE ([updater.report])")
    ap.add_argument("-u", dest="rdir", metavar="RDIR",
                    help="make RDIR a local source of updates (ClamAV's mirror layout) instead of updating BasesPath")
    ap.add_argument("-g", dest="source", metavar="DIR|URL", help="update from this directory or URL")
    ap.add_argument("-q", dest="quiet", action="store_true", help="no console output (KeepSilent=yes)")
    ap.add_argument("--rollback", action="store_true", help="put the previous database set (BackUpPath) back")
    ap.add_argument("--version", action="version", version="keepup2date (kav4mailservers) 5.5")
    return ap


def proxy_for(cfg: object) -> str | None:
    """UseProxy + ProxyAddress, or $http_proxy when UseProxy is missing or yes (guide 5.1.5)."""
    explicit = cfg.sections.get("updater.options", {}).get("UseProxy")  # type: ignore[attr-defined]
    use = cfg.get("updater.options", "UseProxy")  # type: ignore[attr-defined]
    if explicit is not None and not use:
        return None
    address = cfg.get("updater.options", "ProxyAddress") if use else ""  # type: ignore[attr-defined]
    env = os.environ.get("http_proxy") or os.environ.get("HTTP_PROXY") or ""
    address = address or env
    if not address:
        return None
    return address if "://" in address else f"http://{address}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        key = key_from_config(cfg)
    except (OSError, ValueError) as exc:
        print(f"keepup2date: {exc}", file=sys.stderr)
        return USAGE
    opt = "updater.options"
    silent = args.quiet or cfg.get(opt, "KeepSilent")
    report = args.report if args.report is not None else cfg.get("updater.report", "ReportFileName")
    try:
        log = EventLog.from_config(cfg, "updater.report", path=report or "")
    except OSError as exc:
        print(f"keepup2date: report {report}: {exc.strerror or exc}", file=sys.stderr)
        return USAGE
    if not report and silent:
        log._stream = open(os.devnull, "w")  # noqa: SIM115 - KeepSilent: not even the report on stderr
    bases = Path(cfg.get("path", "BasesPath"))
    key_path = cfg.get("path", "BasesPublicKey") or ""
    proxy = proxy_for(cfg)
    ctx = Context(key, Options(cfg.get(opt, "ConnectTimeout"), cfg.get(opt, "ReceiveTimeout"), proxy,
                               progress=not silent and sys.stderr.isatty()),
                  log, cfg.get(opt, "DnsServer"), float(cfg.get(opt, "ConnectTimeout")))
    # ClamAV 1.5's .sign files are checked with the certificates of certs/ beside the configuration
    # (freshclam's CVDCertsDirectory, /etc/clamav/certs); no such directory: they are not consulted.
    certs_dir = Path(args.config).absolute().parent / CERTS_DIR
    try:
        ctx.certs = codesign.certificates_for(certs_dir)
    except (codesign.SignError, OSError) as exc:
        print(f"keepup2date: {exc}", file=sys.stderr)
        log.error(str(exc))
        return USAGE

    def say(msg: str) -> None:
        if not silent and report:  # the report already went to stderr when it has no file
            print(f"keepup2date: {msg}", file=sys.stderr)

    log.info(f"keepup2date started (pid {os.getpid()}), BasesPath {bases}, signing key: {key.origin}"
             + (f", proxy {display_url(proxy)}" if proxy else ""))
    if ctx.certs:
        log.info(f"ClamAV .sign files are checked with {len(ctx.certs)} certificate(s) of {certs_dir}")
    _key_info(log, cfg)
    try:
        bases.mkdir(parents=True, exist_ok=True)
        with install.run_lock(bases):
            swept = install.sweep(bases)
            if swept:
                log.activity(f"swept {len(swept)} stale temporary file(s): {', '.join(swept[:5])}")
            if args.rollback:
                return _rollback(cfg, bases, key_path, log, say)
            from runtime.license.policy import licence_allows_update

            allowed, why = licence_allows_update(cfg)
            log.info(f"licence: {why}")
            if not allowed:
                log.error(f"update stopped: {why}")
                say(f"update stopped: {why}")
                return LICENCE
            if args.rdir:
                return _mirror(cfg, bases, Path(args.rdir), args.source, ctx, say)
            return _update(cfg, bases, key_path, args.source, ctx, say)
    except install.Locked as exc:
        log.error(str(exc))
        say(str(exc))
        return LOCKED
    except UpdateFailed as exc:
        line = "update failed, databases unchanged: " + "; ".join(exc.errors)
        log.error(line)
        say(line)
        return SOURCES_FAILED
    except OSError as exc:
        line = f"update failed, databases unchanged: {exc.filename or bases}: {exc.strerror or exc}"
        log.error(line)
        say(line)
        return SOURCES_FAILED
    finally:
        log.close()


def _key_info(log: EventLog, cfg: object) -> None:
    try:
        from runtime.license.info import log_key_info
    except ImportError:  # pragma: no cover - the licence package ships with the runtime
        return
    log_key_info(log, cfg)


def _update(cfg: object, bases: Path, key_path: str, override: str | None, ctx: Context, say: callable) -> int:
    log = ctx.log
    state = install.state_dir(bases)
    cool = CoolDown(install.load_json(state / "cooldown.json"))
    validators_all = install.load_json(state / "validators.json")
    entries, only = ordered(cfg, override)
    log.activity("sources: " + ", ".join(display_url(e.url) for e in entries) + (" (only these)" if only else ""))
    have = install.installed(bases)
    log.info("installed: " + (", ".join(f"{db} {i.version}" for db, i in sorted(have.items())) or "nothing"))
    staging = install.new_staging(bases)
    result: dict[str, object] = {}

    def run(src: Source) -> Staged:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        got = stage_from(src, ctx, have, staging, install.partial_dir(bases), validators_all.get(src.name, {}))
        if got.files:
            install.fill_staging(staging, bases, set(got.files))
            res = install.load_test(staging, key_path)
            log.info(f"load test of the new set: {res.records} records in {res.seconds:.2f} s, "
                     f"peak memory {res.max_rss_kb / 1024:.0f} MB")
            result["load"] = res
        return got

    try:
        try:
            src, got = try_sources(entries, ctx, cool, run)
        finally:
            install.save_json(state / "cooldown.json", cool.until, log)
        cool.clear(src.name)
        install.save_json(state / "cooldown.json", cool.until, log)
        if not got.files:
            validators_all.setdefault(src.name, {}).update(got.validators)
            install.save_json(state / "validators.json", validators_all, log)
            line = f"databases are up to date ({src}): nothing downloaded (0 bytes)"
            log.info(line)
            say(line)
            return OK
        t0 = time.monotonic()
        backup = Path(cfg.get("updater.path", "BackUpPath"))  # type: ignore[attr-defined]
        install.switch(staging, bases, backup, sorted(got.files))
        swap = time.monotonic() - t0
        shutil.rmtree(install.partial_dir(bases), ignore_errors=True)
        validators_all.setdefault(src.name, {}).update(got.validators)
        install.save_json(state / "validators.json", validators_all, log)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for via in got.via.values():
        log.info(f"updated {via}")
    line = (f"databases updated from {src}: " + ", ".join(f"{n} version {v}" for n, v in sorted(got.files.items()))
            + f"; downloaded {got.downloaded} bytes; switched in {swap:.3f} s; previous set kept in {backup}")
    log.info(line)
    say(line)
    return _post_update(cfg, log, say)


def _post_update(cfg: object, log: EventLog, say: callable) -> int:
    cmd = cfg.get("updater.options", "PostUpdateCmd")  # type: ignore[attr-defined]
    if not cmd:
        return OK
    # The admin's own command line from the root-owned configuration (guide 5.1), run by the shell
    # as the guide's examples are; nothing from a download or a mirror ever reaches it.
    try:
        proc = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        log.error(f"PostUpdateCmd {cmd!r} did not finish in 300 s")
        return POSTCMD
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        line = f"PostUpdateCmd {cmd!r} failed: {why}"
        log.error(line)
        say(line)
        return POSTCMD
    log.info(f"PostUpdateCmd {cmd!r} done")
    return OK


def _rollback(cfg: object, bases: Path, key_path: str, log: EventLog, say: callable) -> int:
    backup = Path(cfg.get("updater.path", "BackUpPath"))  # type: ignore[attr-defined]
    previous = [f for f in install.database_files(backup) if install.managed(f.name)]
    if not previous:
        line = f"rollback impossible: no previous set in {backup}"
        log.error(line)
        say(line)
        return NO_BACKUP
    staging = install.new_staging(bases)
    try:
        for f in previous:
            install._link_or_copy(f, staging / f.name)
        install.fill_staging(staging, bases, {f.name for f in previous})
        try:
            res = install.load_test(staging, key_path)
        except install.InstallError as exc:
            line = f"rollback refused, databases unchanged: {exc}"
            log.error(line)
            say(line)
            return NO_BACKUP
        names = sorted(f.name for f in previous)
        extra = [f.name for f in install.database_files(bases)
                 if install.managed(f.name) and f.name.partition(".")[0] not in {n.partition(".")[0] for n in names}]
        install.switch(staging, bases, backup, names, extra)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    have = install.installed(bases)
    line = ("rolled back to the previous set: " + ", ".join(f"{db} {i.version}" for db, i in sorted(have.items()))
            + f" ({res.records} records); the set it replaced is now in {backup}")
    log.info(line)
    say(line)
    return _post_update(cfg, log, say)


def _mirror(cfg: object, bases: Path, rdir: Path, override: str | None, ctx: Context, say: callable) -> int:
    """``-u RDIR``: fetch verified full containers (and the diffs seen) into a local source (5.1.4)."""
    log = ctx.log
    rdir.mkdir(parents=True, exist_ok=True)
    state = install.state_dir(bases)
    cool = CoolDown(install.load_json(state / "cooldown.json"))
    entries, _only = ordered(cfg, override)
    have = {db: i for db, i in install.installed(rdir).items() if i.path.suffix == ".cvd"}
    staging = install.new_staging(bases)
    try:
        try:
            src, got = try_sources(entries, ctx, cool, lambda s: stage_from(
                s, ctx, have, staging, install.partial_dir(bases), {}, mirror=True))
        finally:
            install.save_json(state / "cooldown.json", cool.until, log)
        for name, data in {**got.cdiffs, **got.signs}.items():
            install.write_new(staging / name, data)
        for name in sorted(got.cdiffs) + sorted(got.signs) + sorted(got.files):
            shutil.move(staging / name, rdir / f".{name}.tmp")
            os.replace(rdir / f".{name}.tmp", rdir / name)
        shutil.rmtree(install.partial_dir(bases), ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not got.files:
        line = f"local source {rdir} is up to date ({src}): nothing downloaded (0 bytes)"
    else:
        line = (f"local source {rdir} updated from {src}: " + ", ".join(
            f"{n} version {v}" for n, v in sorted(got.files.items())) + f", {len(got.cdiffs)} .cdiff; "
                f"downloaded {got.downloaded} bytes")
    log.info(line)
    say(line)
    return OK


if __name__ == "__main__":
    sys.exit(main())
