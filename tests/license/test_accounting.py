"""The accounting store (5.4.1): concurrent writers, kill -9, notice claims, privacy of the file."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import stat
import tempfile
import time
from pathlib import Path

import pytest

from runtime.license.accounting import DAY, Accounting
from tests.support.license import Publisher, licence_paths, licensemanager

DOMAINS = [r"@example\.com$", r"@mail\.example\.org$"]


def test_licensed_users_use_the_config_masks_with_the_guides_escaping(tmp_path: Path) -> None:
    acc = Accounting(tmp_path, DOMAINS)
    got = acc.licensed(["Alice@Example.COM", "bob@exampleXcom", "", "carol@mail.example.org",
                        "alice@example.com", "dave@other.net"])
    assert got == ["alice@example.com", "carol@mail.example.org"]


def _writer(directory: str, n: int, tag: int) -> None:
    acc = Accounting(directory, DOMAINS)
    for i in range(n):
        acc.record(100 + tag, [f"w{tag}-{i % 17}@example.com", "x@outside.net"], digest=f"{tag}-{i}".encode())
    acc.close()


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    pids = []
    for tag in range(6):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _writer(str(tmp_path), 200, tag)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    usage = Accounting(tmp_path, DOMAINS).usage()
    assert usage.today_bytes == sum(200 * (100 + t) for t in range(6))
    assert usage.users == 6 * 17
    assert sum(1 for b in usage.hourly if b) == 1 or time.localtime().tm_min == 0  # one hour bucket
    assert stat.S_IMODE((tmp_path / "accounting.db").stat().st_mode) == 0o600  # plain addresses: private
    with sqlite3.connect(tmp_path / "accounting.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_kill_9_of_a_writer_keeps_every_committed_count(tmp_path: Path) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        acc = Accounting(tmp_path, DOMAINS)
        i = 0
        while True:
            acc.record(10, [f"u{i}@example.com"])
            i += 1
            os.write(w, b".")  # after the commit
    os.close(w)
    seen = 0
    while seen < 300:
        seen += len(os.read(r, 4096))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(r, 4096):
        seen += len(chunk)
    os.close(r)
    acc = Accounting(tmp_path, DOMAINS)
    usage = acc.usage()
    assert seen <= usage.users <= seen + 1  # at most the one committed but not yet reported
    assert usage.today_bytes == 10 * usage.users
    acc.record(10, ["after@example.com"])
    assert acc.usage().users == usage.users + 1
    with sqlite3.connect(tmp_path / "accounting.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_resent_message_counts_once(tmp_path: Path) -> None:
    acc = Accounting(tmp_path, DOMAINS)
    assert acc.record(500, ["a@example.com"], digest=b"d1") is True
    assert acc.record(500, ["a@example.com"], digest=b"d1") is False
    assert acc.record(700, ["b@example.com"], digest=b"d2") is True
    assert acc.usage().today_bytes == 1200 and acc.usage().users == 2


def test_users_are_counted_from_the_keys_start(tmp_path: Path) -> None:
    acc = Accounting(tmp_path, DOMAINS)
    now = time.time()
    acc.record(1, ["old@example.com"], now=now - 40 * DAY)
    acc.record(1, ["new@example.com"], now=now)
    assert acc.usage(since=now - 10 * DAY).users == 1
    assert acc.usage().users == 2
    assert [u[0] for u in acc.users(since=now - 10 * DAY)] == ["new@example.com"]


def test_notice_claims_once_a_day_and_once_per_start(tmp_path: Path) -> None:
    a, b = Accounting(tmp_path), Accounting(tmp_path)  # two filter processes
    t = 1_000_000.0
    assert a.claim_periodic("expiring:X", now=t)
    assert not b.claim_periodic("expiring:X", now=t + 60)
    assert not a.claim_periodic("expiring:X", now=t + DAY - 1)
    assert b.claim_periodic("expiring:X", now=t + DAY)
    assert a.claim_start("expiring:X", "start-1", now=t + DAY + 5)  # a start sends and restarts the clock
    assert not b.claim_start("expiring:X", "start-1", now=t + DAY + 6)  # its sibling worker does not
    assert not a.claim_periodic("expiring:X", now=t + 2 * DAY)
    assert a.claim_start("expiring:X", "start-2", now=t + 2 * DAY)
    a.release("expiring:X")  # the notice could not be sent: the next message tries again
    assert b.claim_periodic("expiring:X", now=t + 2 * DAY + 1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_reads_the_store_as_its_owner(tmp_path: Path) -> None:
    top = Path(tempfile.mkdtemp(prefix="kavlic."))  # traversable by the store's owner
    try:
        os.chmod(top, 0o755)  # noqa: S103 - a scratch dir the dropped reader must traverse
        pub = Publisher.create(top)
        paths = licence_paths(top)
        conf = top / "kav4mailservers.conf"
        conf.write_text("[path]\n" + "".join(f"{k}={v}\n" for k, v in paths.items()))
        key = top / "u.key"
        key.write_bytes(pub.key(units=10))
        assert licensemanager(conf, "-a", str(key)).returncode == 0
        acc = Accounting(paths["LicenseStatePath"], DOMAINS)
        acc.record(1234, ["a@example.com", "b@example.com"])
        acc.close()
        for p in [top / "licensing", *(top / "licensing").iterdir()]:
            os.chown(p, 65534, 65534)  # the filter's account owns its store
        r = licensemanager(conf, "-i")
        assert r.returncode == 0, r.stderr
        assert "Users units used: 2" in r.stdout and "Users units left: 8" in r.stdout
        assert {p.stat().st_uid for p in (top / "licensing").iterdir()} == {65534}  # root created nothing
        r = licensemanager(conf, "--users")
        assert "a@example.com\t" in r.stdout and "2 licensed users" in r.stdout
    finally:
        shutil.rmtree(top)
