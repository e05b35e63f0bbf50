"""keepup2date end to end (issue 13): a real HTTP mirror, a running aveserver, real failures."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from runtime.engine.cvd import build_header
from runtime.engine.dsig import sign
from tests.support.clamav import build_cvd, make_test_key
from tests.support.procs import wait_for
from tests.support.updater import (
    REPO,
    SAMPLES,
    AveServer,
    Mirror,
    MirrorServer,
    Pinger,
    daily_members,
    detects,
    snapshot,
    write_conf,
)
from tests.support.updater import (
    keepup2date as run,
)


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    return make_test_key().write_public(tmp_path / "test.key")


def setup_conf(tmp: Path, keyfile: Path, extra: dict[str, dict[str, str]] | None = None,
               name: str = "kav4mailservers.conf", bases: Path | None = None) -> tuple[Path, Path]:
    bases = bases or tmp / "bases"
    bases.mkdir(exist_ok=True)
    merged = {"path": {"BasesPublicKey": str(keyfile)}}
    for k, v in (extra or {}).items():
        merged.setdefault(k, {}).update(v)
    return write_conf(tmp / name, bases, merged), bases


def test_fill_reload_nothing_new_cdiff_and_rollback(tmp_path: Path, mirror: Mirror, server: MirrorServer,
                                                    keyfile: Path) -> None:
    bases = tmp_path / "bases"
    bases.mkdir()
    ave = AveServer(tmp_path, bases, keyfile)
    conf, _ = setup_conf(tmp_path, keyfile, {
        **ave.sections, "updater.options": {"PostUpdateCmd": f"kill -HUP $(cat {ave.pidfile})"}})
    ave.start(conf)
    try:
        assert detects(ave.sock, SAMPLES["B"]) == ""
        with Pinger(ave.sock) as pings:
            # 1. empty BasesPath: filled, aveserver reloads and detects the new signatures
            r = run(conf, "-g", server.url())
            assert r.returncode == 0, r.stderr
            assert {"main.cvd", "daily.cvd"} <= set(os.listdir(bases))
            wait_for(lambda: ave.reloads() >= 1, what="aveserver reload")
            # old workers may take one more connection between "reload complete" and their retirement
            wait_for(lambda: detects(ave.sock, SAMPLES["B"]) == "Kav4ms.Test.Updater.B", what="new signatures")
            assert detects(ave.sock, SAMPLES["A"]) == "Kav4ms.Test.Updater.A"
            report = (tmp_path / "keepup2date.log").read_text()
            assert "databases updated from" in report and "load test of the new set" in report

            # 2. nothing new: no download, and the report says so
            before = snapshot(bases)
            server.hits.clear()
            r = run(conf, "-g", server.url())
            assert r.returncode == 0, r.stderr
            assert "nothing downloaded (0 bytes)" in (tmp_path / "keepup2date.log").read_text()
            assert snapshot(bases) == before
            assert ave.reloads() == 1

            # 3. a new daily arrives as a .cdiff (the full daily.cvd is never fetched)
            mirror.set_daily(2)
            server.hits.clear()
            r = run(conf, "-g", server.url())
            assert r.returncode == 0, r.stderr
            assert "/ok/daily-2.cdiff" in server.hits
            assert server.hits.count("/ok/daily.cvd") == 1  # the 512-byte conditional header check only
            assert (bases / "daily.cld").exists() and not (bases / "daily.cvd").exists()
            assert "by 1 .cdiff" in (tmp_path / "keepup2date.log").read_text()
            wait_for(lambda: ave.reloads() >= 2, what="second reload")
            wait_for(lambda: detects(ave.sock, SAMPLES["C"]) == "Kav4ms.Test.Updater.C", what="cdiff signatures")

            # 4. rollback: the previous set is back, aveserver answers throughout
            r = run(conf, "--rollback")
            assert r.returncode == 0, r.stderr
            assert (bases / "daily.cvd").exists() and not (bases / "daily.cld").exists()
            wait_for(lambda: ave.reloads() >= 3, what="reload after rollback")
            wait_for(lambda: detects(ave.sock, SAMPLES["C"]) == "", what="rolled-back set")
            assert detects(ave.sock, SAMPLES["B"]) == "Kav4ms.Test.Updater.B"
        assert pings.ok > 5
        assert pings.failures == []
    finally:
        ave.stop()


def _tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _signed(path: Path, payload_tar: bytes, version: int) -> None:
    key = make_test_key()
    payload = gzip.compress(payload_tar, mtime=0)
    md5 = hashlib.md5(payload).hexdigest()
    path.write_bytes(build_header("01 Dec 2026 10-00 +0000", version, 1, 90, md5, sign(md5, key.n, key.d),
                                  "kavtest", 1_700_000_000) + payload)


def _bad_dotdot(root: Path) -> None:
    info = tarfile.TarInfo("../evil.hdb")
    info.size = 4
    _signed(root / "daily.cvd", _tar([(info, b"x\n\n\n")]), 2)


def _bad_link(root: Path) -> None:
    info = tarfile.TarInfo("daily.hdb")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/shadow"
    _signed(root / "daily.cvd", _tar([(info, b"")]), 2)


def _bad_size(root: Path) -> None:
    """A tar header claiming 1 MB for a member followed by 10 bytes (signed: only the size lies)."""
    info = tarfile.TarInfo("daily.hdb")
    info.size = 10
    raw = bytearray(_tar([(info, b"0123456789")]))
    raw[124:136] = b"%011o\0" % (1 << 20)
    chk = sum(raw[:148]) + 8 * 32 + sum(raw[156:512])
    raw[148:156] = b"%06o\0 " % chk
    _signed(root / "daily.cvd", bytes(raw[:1024]), 2)


def _bad_signature(root: Path) -> None:
    other = type(make_test_key())(*_other_key())
    build_cvd(root / "daily.cvd", daily_members(2), other, version=2)


def _other_key() -> tuple[int, int, int]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    nums = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_numbers()
    return nums.public_numbers.n, nums.public_numbers.e, nums.d


def _downgrade(root: Path) -> None:
    build_cvd(root / "daily.cvd", daily_members(1), make_test_key(), version=0)


def _html_as_cvd(root: Path) -> None:
    """An error page stored under the container's name (served as application/octet-stream)."""
    (root / "daily.cvd").write_bytes(b"<!DOCTYPE html>\n<html><body>503 Service Unavailable</body></html>\n" * 10)


BAD = {
    "html stored as the cvd": ("ok", _html_as_cvd, "an HTML page was served instead"),
    "truncated": ("trunc", None, "truncated download"),
    "html page": ("html", None, "HTML page"),
    "bad signature": ("ok", _bad_signature, "digital signature does not match"),
    "tar with ../": ("ok", _bad_dotdot, "not a plain file name"),
    "tar with a link": ("ok", _bad_link, "not a regular file"),
    "header lying about size": ("ok", _bad_size, "archive unreadable"),
    "hanging mirror": ("hang", None, "timed out"),
    "429": ("429", None, "429 Too Many Requests"),
    "downgrade": ("ok", _downgrade, "downgrade refused"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_leaves_the_set_unchanged(tmp_path: Path, mirror: Mirror, server: MirrorServer, keyfile: Path,
                                            case: str) -> None:
    bases = tmp_path / "bases"
    bases.mkdir()
    ave = AveServer(tmp_path, bases, keyfile)
    conf, _ = setup_conf(tmp_path, keyfile, {
        **ave.sections, "updater.options": {"PostUpdateCmd": f"kill -HUP $(cat {ave.pidfile})"}})
    ave.start(conf)
    try:
        assert run(conf, "-g", server.url()).returncode == 0
        wait_for(lambda: ave.reloads() >= 1, what="aveserver reload")
        wait_for(lambda: detects(ave.sock, SAMPLES["B"]) == "Kav4ms.Test.Updater.B", what="first set served")
        before = snapshot(bases)
        mode, breaker, reason = BAD[case]
        (mirror.root / "daily-2.cdiff").unlink(missing_ok=True)
        if breaker is None:
            mirror.set_daily(2, with_cdiffs=False)
        else:
            breaker(mirror.root)
        with Pinger(ave.sock) as pings:
            r = run(conf, "-g", server.url(mode))
        assert r.returncode == 2, (r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln]
        assert len(lines) == 1 and f"127.0.0.1:{server.port}/{mode}/" in lines[0] and reason in lines[0], lines
        assert snapshot(bases) == before
        assert pings.failures == [] and pings.ok >= 1
        assert detects(ave.sock, SAMPLES["B"]) == "Kav4ms.Test.Updater.B"
        assert not list((bases / ".keepup2date").glob("staging*"))
        if case == "429":  # the cool-down is persisted: the next run does not even ask
            server.hits.clear()
            r = run(conf, "-g", server.url(mode))
            assert r.returncode == 2 and "cooling down until" in r.stderr
            assert server.hits == []
    finally:
        ave.stop()


def test_resume_after_truncation(tmp_path: Path, mirror: Mirror, server: MirrorServer, keyfile: Path) -> None:
    conf, bases = setup_conf(tmp_path, keyfile)
    r = run(conf, "-g", server.url("trunc"))
    assert r.returncode == 2 and "truncated download" in r.stderr
    assert list((bases / ".keepup2date" / "partial").glob("*.part")), "the broken download is kept for resume"
    codes = [run(conf, "-g", server.url("trunc")).returncode for _ in range(2)]
    assert codes[-1] == 0
    half = (mirror.root / "main.cvd").stat().st_size // 2
    assert f"/trunc/main.cvd bytes={half}-" in server.ranges
    assert {"main.cvd", "daily.cvd"} <= set(os.listdir(bases))


def test_a_set_without_signatures_is_refused(tmp_path: Path, mirror: Mirror, server: MirrorServer,
                                             keyfile: Path) -> None:
    key = make_test_key()
    build_cvd(mirror.root / "main.cvd", {"main.info": b"x\n", "main.hdb": b"not a signature\n"}, key, version=1)
    build_cvd(mirror.root / "daily.cvd", {"daily.info": b"x\n", "daily.hdb": b"nor this\n"}, key, version=1)
    conf, bases = setup_conf(tmp_path, keyfile)
    r = run(conf, "-g", server.url())
    assert r.returncode == 2 and "load test refused the new set" in r.stderr, r.stderr
    assert not any(p.is_file() for p in bases.iterdir())


def test_local_mirror_is_a_source(tmp_path: Path, mirror: Mirror, server: MirrorServer, keyfile: Path) -> None:
    mirror.set_daily(2)
    conf, bases = setup_conf(tmp_path, keyfile)
    rdir = tmp_path / "rdir"
    r = run(conf, "-u", str(rdir), "-g", server.url())
    assert r.returncode == 0, r.stderr
    assert {"main.cvd", "daily.cvd"} <= set(os.listdir(rdir))
    assert not any(p.name.endswith(".cvd") for p in bases.iterdir()), "-u does not touch BasesPath"
    r = run(conf, "-g", server.url())
    assert r.returncode == 0
    conf2, bases2 = setup_conf(tmp_path, keyfile, name="second.conf", bases=tmp_path / "bases2")
    r = run(conf2, "-g", str(rdir))
    assert r.returncode == 0, r.stderr
    assert snapshot(bases2) == {k: v for k, v in snapshot(bases).items()}


def test_lock_refuses_an_overlapping_run(tmp_path: Path, server: MirrorServer, keyfile: Path) -> None:
    conf, bases = setup_conf(tmp_path, keyfile)
    (bases / ".keepup2date").mkdir()
    fd = os.open(bases / ".keepup2date" / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run(conf, "-g", server.url())
    finally:
        os.close(fd)
    assert r.returncode == 3 and "another keepup2date is running" in r.stderr
    assert not any(bases.glob("*.cvd"))


def test_stale_staging_is_swept(tmp_path: Path, server: MirrorServer, keyfile: Path) -> None:
    conf, bases = setup_conf(tmp_path, keyfile)
    stale = bases / ".keepup2date" / "staging.99999"
    stale.mkdir(parents=True)
    (stale / "daily.cvd").write_bytes(b"x" * 100)
    assert run(conf, "-g", server.url()).returncode == 0
    assert not stale.exists()


def test_rollback_without_backup(tmp_path: Path, keyfile: Path) -> None:
    conf, _ = setup_conf(tmp_path, keyfile)
    r = run(conf, "--rollback")
    assert r.returncode == 5 and "no previous set" in r.stderr


def test_help_documents_exit_codes() -> None:
    r = subprocess.run([sys.executable, "-m", "runtime.updater.cli", "--help"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), check=True)
    for code in range(7):
        assert f"\n  {code}  " in r.stdout
    man = (REPO / "docs/man/keepup2date.8").read_text()
    for code in range(7):
        assert f".B {code}\n" in man


def test_report_file_level_and_quiet(tmp_path: Path, server: MirrorServer, keyfile: Path) -> None:
    conf, bases = setup_conf(tmp_path, keyfile, {"updater.report": {"ReportLevel": "1", "Append": "no"}})
    report = tmp_path / "updates.log"
    r = run(conf, "-l", str(report), "-q", "-g", server.url("hang"))
    assert r.returncode == 2 and r.stdout == "" and r.stderr == ""  # -q: only the report speaks
    lines = report.read_text().splitlines()
    assert lines and all(re.fullmatch(r"\[\d\d/\d\d/\d\d \d\d:\d\d:\d\d [FE]\] .+", ln) for ln in lines), lines
    r = run(conf, "-l", str(report), "-g", server.url())
    assert r.returncode == 0
    assert "timed out" not in report.read_text()  # Append=no: the report starts afresh each run


def test_a_source_requiring_a_key_stops_without_one(tmp_path: Path, server: MirrorServer, keyfile: Path) -> None:
    licences = tmp_path / "licences"
    licences.mkdir()
    conf, bases = setup_conf(tmp_path, keyfile, {"path": {"LicensePath": str(licences)},
                                                 "updater.options": {"RequireKey": "yes"}})
    server.hits.clear()
    r = run(conf, "-g", server.url())
    assert r.returncode == 4 and "update stopped" in r.stderr and "(5.4)" in r.stderr, r.stderr
    assert server.hits == [] and not any(bases.glob("*.cvd"))
    assert "no product key installed" in (tmp_path / "keepup2date.log").read_text()


def test_progress_only_on_a_terminal(tmp_path: Path, server: MirrorServer, keyfile: Path) -> None:
    import pty

    conf, bases = setup_conf(tmp_path, keyfile, {"updater.report": {"ReportFileName": ""}})
    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "runtime.updater.cli", "-c", str(conf), "-g", server.url()],
                          env=env, stderr=follower, stdout=subprocess.DEVNULL, timeout=120, check=False)
    os.close(follower)
    seen = b""
    while True:
        try:
            block = os.read(leader, 65536)
        except OSError:
            break
        if not block:
            break
        seen += block
    os.close(leader)
    assert proc.returncode == 0
    assert b"main.cvd: 100% (" in seen
    conf2, bases2 = setup_conf(tmp_path, keyfile, {"updater.report": {"ReportFileName": ""}}, name="b.conf",
                               bases=tmp_path / "bases2")
    r = run(conf2, "-g", server.url())  # not a terminal: the report only, no progress line
    assert r.returncode == 0 and "databases updated" in r.stderr and "%" not in r.stderr


@pytest.mark.parametrize("spoil", ["signature", "move"])
def test_a_bad_cdiff_falls_back_to_the_full_container(tmp_path: Path, mirror: Mirror, server: MirrorServer,
                                                      keyfile: Path, spoil: str) -> None:
    from runtime.updater.cdiff import build_cdiff

    conf, bases = setup_conf(tmp_path, keyfile)
    assert run(conf, "-g", server.url()).returncode == 0
    mirror.set_daily(2)
    diff = mirror.root / "daily-2.cdiff"
    if spoil == "signature":
        diff.write_bytes(diff.read_bytes()[:-3] + b"abc")
    else:  # a command this engine does not apply (ClamAV's MOVE)
        key = make_test_key()
        diff.write_bytes(build_cdiff(b"MOVE daily.hdb daily.ndb 1 a 1 a\n", key.n, key.d))
    server.hits.clear()
    r = run(conf, "-g", server.url())
    assert r.returncode == 0, r.stderr
    assert "/ok/daily-2.cdiff" in server.hits and server.hits.count("/ok/daily.cvd") == 2  # header, then full
    assert (bases / "daily.cvd").exists() and not (bases / "daily.cld").exists()
    log = (tmp_path / "keepup2date.log").read_text()
    assert "falling back to the full daily.cvd" in log
    assert ("digital signature does not match" if spoil == "signature" else "unsupported command 'MOVE'") in log
