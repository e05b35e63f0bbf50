"""One keepup2date run: ask each source in turn, stage and verify, load-test, switch (guide 5.1).

Per source: the versions it offers (DNS TXT when it is ClamAV's official layout, otherwise a
conditional request for each container's 512-byte header), then for each newer container the
``.cdiff`` chain from the installed version (each diff verified) or, if any piece of that chain
is missing or bad, the full container (verified by runtime/engine/cvd.py).  An older version
than installed is a downgrade and refused.  Any failure of a source is one line in the report
and the next source is tried; nothing from it has touched BasesPath.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from runtime.engine.cvd import Container, ContainerError, parse_header, read_container
from runtime.engine.dsig import PublicKey
from runtime.report import EventLog

from . import cdiff, codesign, dnstxt, install
from .fetch import FetchError, LocalWriteError, Options, Source
from .sources import CoolDown, Entry

MAX_CDIFF_CHAIN = 60  # further behind than this, the full container is cheaper


class UpdateFailed(Exception):
    """Every source failed; ``errors`` holds one line per source."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors) or "no update source configured")
        self.errors = errors


@dataclass
class Staged:
    """What one source gave: files ready in the staging directory, or nothing new."""

    files: dict[str, int] = field(default_factory=dict)  # staged file name -> version
    validators: dict[str, dict[str, str]] = field(default_factory=dict)
    downloaded: int = 0  # bytes
    via: dict[str, str] = field(default_factory=dict)  # db -> "cdiff 3 → 5" / "full"
    cdiffs: dict[str, bytes] = field(default_factory=dict)  # for -u: the verified diffs seen
    signs: dict[str, bytes] = field(default_factory=dict)  # for -u: the verified ClamAV 1.5 .sign files seen


@dataclass
class Context:
    key: PublicKey
    opts: Options
    log: EventLog
    dns_server: str = ""
    dns_timeout: float = 5.0
    #: the certificates ClamAV 1.5's .sign files are checked with; None: .sign files are not consulted
    certs: list[x509.Certificate] | None = None


class Refused(Exception):
    """A source offered something untrustworthy (names the source and the reason)."""


def remote_versions(src: Source, ctx: Context) -> dict[str, int] | None:
    """Versions announced by DNS for an official source; None means "ask the source itself"."""
    if not src.txt:
        return None
    try:
        found = dnstxt.current_versions(src.txt, ctx.dns_server, ctx.dns_timeout)
    except (dnstxt.DnsError, ValueError, OSError) as exc:
        ctx.log.warning(f"{src}: DNS version check ({src.txt}) failed: {exc}; asking the source")
        return None
    ctx.log.activity(f"{src}: DNS {src.txt} announces " + ", ".join(f"{k} {v}" for k, v in sorted(found.items())))
    return found


def stage_from(src: Source, ctx: Context, have: dict[str, install.Installed], staging: Path,
               partial: Path, validators: dict[str, dict[str, str]], mirror: bool = False) -> Staged:
    """Stage every newer container from ``src``; raise FetchError/Refused on the first problem."""
    out = Staged()
    announced = remote_versions(src, ctx)
    for db in install.DATABASES:
        local = have.get(db)
        name = f"{db}.cvd"
        if announced is not None:
            remote = announced.get(db)
            if not remote:  # not announced (0: the record has no such database)
                continue
        else:
            try:
                head, newval = src.header(name, validators.get(db, {}))
            except FetchError as exc:
                if exc.missing and db not in install.REQUIRED:
                    continue
                raise
            if head is None:
                ctx.log.activity(f"{src}: {name} unchanged since the last check (conditional request)")
                continue
            try:
                remote = parse_header(head, f"{src.name.rstrip('/')}/{name}").version
            except ContainerError as exc:
                raise Refused(f"{exc}{_html_hint(head)}") from None
            out.validators[db] = newval
        if local is not None and remote < local.version:
            raise Refused(f"{src}: offers {db} version {remote}, older than the installed {local.version}: "
                          "downgrade refused")
        if local is not None and remote == local.version:
            ctx.log.activity(f"{src}: {db} version {remote} is current, nothing to download")
            continue
        if local is not None and not mirror and 0 < remote - local.version <= MAX_CDIFF_CHAIN:
            got = _by_cdiff(src, ctx, db, local, remote, staging, out)
            if got:
                continue
        try:
            _full(src, ctx, db, local, remote if announced is not None else None, staging, partial, out)
        except FetchError as exc:
            if not (exc.missing and db not in install.REQUIRED):
                raise
            ctx.log.warning(f"{exc}: {db} is optional, skipped")
            continue
        if mirror and local is not None and remote - local.version <= MAX_CDIFF_CHAIN:
            _collect_cdiffs(src, ctx, db, local.version, remote, out)
    return out


def check_sign(src: Source, ctx: Context, data: bytes, sign_name: str, what: str, out: Staged) -> None:
    """ClamAV 1.5's detached signature of ``what``, when the source publishes one (runtime/updater/codesign.py).

    As freshclam does: an invalid .sign refuses the file (and the source); a missing one, or one
    whose signer does not chain to the trusted certificates, leaves the header's RSA signature
    (already verified) as the proof.
    """
    if ctx.certs is None:
        return
    try:
        sign = src.small(sign_name, limit=codesign.MAX_SIGN_FILE)
    except FetchError as exc:
        if not exc.missing:
            raise
        ctx.log.activity(f"{src}: no {sign_name}: {what} rests on its RSA signature")
        return
    try:
        signer = codesign.verify_sign_file(data, sign, ctx.certs, f"{src.name.rstrip('/')}/{sign_name}")
    except codesign.SignError as exc:
        raise Refused(f"{src}: {what} refused: {exc}") from None
    except codesign.CannotVerify as exc:
        ctx.log.warning(f"{exc}: {what} rests on its RSA signature")
        return
    ctx.log.info(f"{src}: {what} signed by {signer!r} ({sign_name}, verified)")
    out.signs[sign_name] = sign


def _html_hint(head: bytes) -> str:
    start = head.lstrip()[:15].lower()
    return " (an HTML page was served instead)" if start.startswith((b"<!doctype", b"<html", b"<head", b"<")) else ""


def _by_cdiff(src: Source, ctx: Context, db: str, local: install.Installed, remote: int, staging: Path,
              out: Staged) -> bool:
    """Apply the verified chain local+1..remote; False (logged) means "fall back to the full container"."""
    try:
        base: Container = read_container(local.path, ctx.key)
    except ContainerError as exc:
        ctx.log.warning(f"installed {db} unreadable ({exc}); downloading the full container")
        return False
    members = dict(base.members)
    diffs: dict[str, bytes] = {}
    size = 0
    try:
        for version in range(local.version + 1, remote + 1):
            fname = f"{db}-{version}.cdiff"
            data = src.small(fname)
            size += len(data)
            script = cdiff.verify_cdiff(data, ctx.key, f"{src.name}/{fname}")
            check_sign(src, ctx, data, codesign.sign_file_name(db, version, "cdiff"), fname, out)
            members = cdiff.apply_script(members, script, f"{src.name}/{fname}")
            diffs[fname] = data
    except (FetchError, cdiff.CdiffError) as exc:
        ctx.log.warning(f"{exc}; falling back to the full {db}.cvd")
        return False
    install.write_new(staging / f"{db}.cld", cdiff.write_cld(base, members, remote))
    out.files[f"{db}.cld"] = remote
    out.downloaded += size
    out.cdiffs.update(diffs)
    out.via[db] = f"{db} {local.version} -> {remote} by {remote - local.version} .cdiff ({size} bytes)"
    return True


def _full(src: Source, ctx: Context, db: str, local: install.Installed | None, announced: int | None,
          staging: Path, partial: Path, out: Staged) -> None:
    name = f"{db}.cvd"
    t0 = time.monotonic()
    path = src.download(name, partial / f"{_slug(src.name)}-{name}")
    try:
        box = read_container(path, ctx.key)
    except ContainerError as exc:
        path.unlink(missing_ok=True)  # never resume from a file that failed verification
        raise Refused(f"{src}: {str(exc).replace(str(path), name)}") from None
    version = box.header.version
    try:
        check_sign(src, ctx, path.read_bytes(), codesign.sign_file_name(db, version), name, out)
    except Refused:
        path.unlink(missing_ok=True)
        raise
    if local is not None and version <= local.version:
        path.unlink(missing_ok=True)
        raise Refused(f"{src}: {name} holds version {version}, not newer than the installed {local.version}: "
                      "downgrade refused")
    if announced is not None and version < announced:
        ctx.log.warning(f"{src}: {name} is version {version}, DNS announced {announced} (mirror lagging)")
    size = path.stat().st_size
    os.link(path, staging / name)  # the verified download stays for a later run if this one fails
    out.files[name] = version
    out.downloaded += size
    out.via[db] = f"{db} {local.version if local else 'none'} -> {version} full container ({size} bytes, " \
                  f"{time.monotonic() - t0:.1f} s)"


def _collect_cdiffs(src: Source, ctx: Context, db: str, start: int, remote: int, out: Staged) -> None:
    """For a local mirror (-u): keep the verified diffs so its clients can update incrementally."""
    for version in range(start + 1, remote + 1):
        fname = f"{db}-{version}.cdiff"
        try:
            data = src.small(fname)
            cdiff.verify_cdiff(data, ctx.key, f"{src.name}/{fname}")
            check_sign(src, ctx, data, codesign.sign_file_name(db, version, "cdiff"), fname, out)
        except (FetchError, cdiff.CdiffError, Refused) as exc:
            ctx.log.activity(f"{exc}: not mirrored")
            continue
        out.cdiffs[fname] = data


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)[:80]


def try_sources(entries: list[Entry], ctx: Context, cool: CoolDown, run: callable) -> tuple[Source, Staged]:
    """``run(source)`` on each source in turn until one succeeds; cool-downs skipped and recorded."""
    errors: list[str] = []
    for entry in entries:
        try:
            src = Source(entry.url, ctx.opts, entry.txt)
        except ValueError as exc:
            errors.append(str(exc))
            ctx.log.error(str(exc))
            continue
        until = cool.active(src.name)
        if until:
            msg = f"{src}: skipped, cooling down until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(until))}"
            ctx.log.warning(msg)
            errors.append(msg)
            continue
        ctx.log.info(f"trying update source {src}")
        try:
            return src, run(src)
        except FetchError as exc:
            if exc.cooldown is not None:
                until = cool.start(src.name, exc.cooldown)
                msg = f"{exc} for {exc.cooldown:.0f} s"
            else:
                msg = str(exc)
        except (Refused, install.InstallError, cdiff.CdiffError) as exc:
            msg = str(exc)
        except OSError as exc:  # a full disk while staging: the installed set is untouched
            msg = f"{src}: {install.disk_error(exc, 'staging')}"
            if isinstance(exc, LocalWriteError) or exc.errno in install.LOCAL_ERRNOS:
                # this host's disk, not the source: the next source would fill it the same way
                ctx.log.error(msg)
                raise UpdateFailed([*errors, msg]) from None
        ctx.log.error(msg)
        errors.append(msg)
    raise UpdateFailed(errors)
