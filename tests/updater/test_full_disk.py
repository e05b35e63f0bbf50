"""A disk that fills in the middle of an update (guide 5.1; issue 13 "a full disk leaves the old set
intact"): BasesPath on a small tmpfs of its own, the new main.cvd larger than the room left.

Each case: keepup2date exits non-zero with one line naming the file it could not write, the
installed set is byte-for-byte what it was, the running aveserver answers PING and scans with the
old signatures throughout, and nothing is left behind (no staging directory, no partial download,
no temp file), so the space is the admin's again; once there is room, the same update succeeds.

Mounting needs root (CAP_SYS_ADMIN): skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.updater.cdiff import build_cdiff
from tests.support.clamav import build_cvd
from tests.support.procs import wait_for
from tests.support.updater import (
    SAMPLES,
    AveServer,
    Mirror,
    MirrorServer,
    Pinger,
    cdiff_script,
    detects,
    hdb_line,
    write_conf,
)
from tests.support.updater import (
    keepup2date as _run,
)
from tests.support.updater import (
    snapshot as _snapshot,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs as BasesPath needs root")


class Tmpfs:
    """A tmpfs of ``size`` bytes at ``where``, and a filler file to take its free space down."""

    def __init__(self, where: Path, size: int) -> None:
        where.mkdir(parents=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        self.where = where
        self.filler = where / "filler"

    def free(self) -> int:
        st = os.statvfs(self.where)
        return st.f_bavail * st.f_frsize

    def leave_free(self, nbytes: int) -> None:
        """Grow the filler until about ``nbytes`` are left."""
        self.filler.unlink(missing_ok=True)
        with open(self.filler, "wb") as fh:
            fh.write(b"\0" * max(0, self.free() - nbytes))

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(self.where)], check=False)


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Tmpfs]:
    t = Tmpfs(tmp_path / "fs", 4 * 1024 * 1024)
    yield t
    t.unmount()


def _pad(lines: int = 30000) -> bytes:
    """Signature lines with random MD5s, which gzip cannot shrink much: about 1.7 MB for 30 000."""
    return b"".join(f"{os.urandom(16).hex()}:{1000 + i}:Kav4ms.Test.Pad.{i}\n".encode() for i in range(lines))


def _big_main(mirror: Mirror, version: int) -> int:
    """main ``version``: detects A and D, padded: about 1 MB of container."""
    build_cvd(mirror.root / "main.cvd", {"main.hdb": hdb_line("A") + hdb_line("D") + _pad(), "main.info": b"main\n"},
              mirror.key, version=version)
    return (mirror.root / "main.cvd").stat().st_size


def _big_daily(mirror: Mirror) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """daily 1 (B and the padding) in the mirror; returns its members and those of daily 2 (adds D)."""
    pad = _pad()
    old = {"daily.hdb": hdb_line("B") + pad, "daily.info": b"daily version 1\n"}
    new = {"daily.hdb": hdb_line("B") + pad + hdb_line("D"), "daily.info": b"daily version 2\n"}
    build_cvd(mirror.root / "daily.cvd", old, mirror.key, version=1)
    return old, new


def _leftovers(bases: Path, backup: Path) -> list[str]:
    state = bases / ".keepup2date"
    left = [p.name for p in state.iterdir() if p.name.startswith("staging")]
    partial = state / "partial"
    left += [f"partial/{p.name}" for p in partial.iterdir()] if partial.is_dir() else []
    left += [p.name for p in bases.iterdir() if p.name.endswith(".tmp")]
    left += [p.name for p in backup.parent.iterdir() if p.name.startswith(backup.name + ".")]
    return left


@pytest.mark.parametrize("where", ["bases", "cdiff", "backup"])
def test_a_full_disk_mid_update_leaves_the_old_set_serving(tmp_path: Path, fs: Tmpfs, where: str) -> None:
    """``bases``: BasesPath's filesystem fills while the new main.cvd downloads. ``cdiff``: it fills
    while the .cdiff-updated daily.cld is written into the staging set. ``backup``: BasesPath has
    room, but BackUpPath is on another filesystem that is full when the current set is saved there,
    the last step before the switch."""
    mirror = Mirror(tmp_path / "mirror").build(daily=1)
    daily = _big_daily(mirror) if where == "cdiff" else None
    key = mirror.key.write_public(tmp_path / "test.key")
    server = MirrorServer(mirror.root)
    bases = fs.where / "bases"
    bases.mkdir()
    backup_fs = Tmpfs(tmp_path / "backupfs", 2 * 1024 * 1024) if where == "backup" else None
    backup = (backup_fs.where if backup_fs else fs.where) / "bases.backup"
    ave = AveServer(tmp_path, bases, key)
    conf = write_conf(tmp_path / "kav4mailservers.conf", bases,
                      {**ave.sections, "path": {**ave.sections["path"], "BasesPublicKey": str(key)},
                       "updater.path": {"BackUpPath": str(backup)},
                       "updater.options": {"PostUpdateCmd": f"kill -HUP $(cat {ave.pidfile})"}})
    try:
        ave.start(conf)  # on the empty BasesPath, as a fresh installation
        r = _run(conf, "-g", server.url())
        assert r.returncode == 0, r.stderr
        wait_for(lambda: ave.reloads() >= 1, what="aveserver reload")
        wait_for(lambda: detects(ave.sock, SAMPLES["B"]) == "Kav4ms.Test.Updater.B", what="the first set")
        assert detects(ave.sock, SAMPLES["A"]) == "Kav4ms.Test.Updater.A"
        before = _snapshot(bases)

        if daily is not None:  # daily 2 published as a .cdiff only: the .cld it makes is ~1.7 MB
            (mirror.root / "daily-2.cdiff").write_bytes(
                build_cdiff(cdiff_script(*daily), mirror.key.n, mirror.key.d))
            mirror.root.joinpath("daily.cvd").unlink()
            build_cvd(mirror.root / "daily.cvd", daily[1], mirror.key, version=2)
            fs.leave_free(sum(len(v) for v in daily[1].values()) // 3)
        elif backup_fs is None:
            fs.leave_free(_big_main(mirror, 2) // 3)  # the download of main.cvd runs out of room a third of the way
        else:
            _big_main(mirror, 2)
            backup_fs.leave_free(0)
        with Pinger(ave.sock) as pings:
            r = _run(conf, "-g", server.url())
            assert detects(ave.sock, SAMPLES["D"]) == ""  # still the old set
            assert detects(ave.sock, SAMPLES["A"]) == "Kav4ms.Test.Updater.A"
        assert pings.ok > 0 and pings.failures == []
        assert r.returncode != 0
        errors = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert errors and "No space left on device" in errors[-1], r.stderr
        # the line names the file that could not be written, and where it was going
        named = {"bases": str(bases / ".keepup2date/partial/"), "cdiff": str(bases / ".keepup2date/staging"),
                 "backup": str(backup)}[where]
        assert named in errors[-1], r.stderr
        assert _snapshot(bases) == before
        left = _leftovers(bases, backup)
        if where == "cdiff":
            assert "daily.cld" in errors[-1]
        if backup_fs is None:
            assert left == []  # the part that filled the disk is gone: the room is the admin's again
        else:  # BasesPath had room: the complete, verified download is kept for the next run, no part
            assert left and all(n.startswith("partial/") and not n.endswith((".part", ".part.json")) for n in left)
        assert ave.reloads() == 1  # PostUpdateCmd never ran

        # room again: the same update goes through, and aveserver picks it up
        (backup_fs or fs).filler.unlink()
        r = _run(conf, "-g", server.url())
        assert r.returncode == 0, r.stderr
        wait_for(lambda: ave.reloads() >= 2, what="aveserver reload")
        wait_for(lambda: detects(ave.sock, SAMPLES["D"]) == "Kav4ms.Test.Updater.D", what="the new main")
        assert _leftovers(bases, backup) == []
    finally:
        ave.stop()
        server.close()
        if backup_fs is not None:
            backup_fs.unmount()
