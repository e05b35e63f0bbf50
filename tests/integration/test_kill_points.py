"""Issue 11 item 13: `kill -9` at every point where the installer has written a temporary file but
not yet renamed it into place (the journal's `.journal.json.*.tmp`, a blob's, `/etc/.group.*.kavtmp`
and the like), then `recover`: the tree is exactly as before, with no temporary left behind.

Each kill is real: a child process applies the plan with os.rename/os.replace wrapped so that the N-th call
sends SIGKILL to the process itself, for N = 1, 2, ... until a run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kavsetup.integrate.files import Root
from kavsetup.integrate.transaction import Transaction
from tests.support.integration import REPO, diff_snapshots, make_root, snapshot

pytestmark = pytest.mark.root

CHILD = r"""
import os, signal, sys
from kavsetup.integrate.edits import AccountLine, EnsureDir, InsertBlock, Plan, SetParams, Symlink, WriteFile
from kavsetup.integrate.files import Root
from kavsetup.integrate.transaction import Transaction

kill_at = int(sys.argv[2])
calls = 0

def killing(real):
    def rename(src, dst, *a, **kw):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *a, **kw)
    return rename

os.rename, os.replace = killing(os.rename), killing(os.replace)
plan = Plan("test", (
    AccountLine("/etc/group", "filter", "filter:x:150:"),
    EnsureDir("/var/spool/filter", 0o750, 0, 150),
    WriteFile("/etc/new.sh", "#!/bin/sh\n", 0o755),
    InsertBlock("/etc/app.conf", "blk", "gamma = 3", anchor=r"^alpha"),
    SetParams("/etc/app.conf", (("beta", "20"),)),
    Symlink("/etc/link", "/etc/app.conf"),
))
out = Transaction(Root(sys.argv[1])).apply(plan)
sys.exit(0 if out.ok else 3)
"""


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".tmp", ".kavtmp")) or ".kavtmp" in p.name)


def test_recover_after_kill_9_at_every_rename_leaves_no_temporary(tmp_path: Path) -> None:
    killed = 0
    for n in range(1, 200):
        base = tmp_path / str(n)
        root = make_root(base, {"/etc/app.conf": "alpha = 1\nbeta = 2\n"})
        (root / "var/spool").mkdir(parents=True)
        # the state directory is the package's (dpkg ships it); kavsetup creates journal/ under it
        (root / "var/lib/kav/5.5/kav4mailservers").mkdir(parents=True)
        original = snapshot(root)
        r = subprocess.run([sys.executable, "-c", CHILD, str(root), str(n)], cwd=REPO, capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
        if r.returncode == 0:
            break  # no rename left to kill at: every point was covered
        assert r.returncode == -signal.SIGKILL, r.stderr
        killed += 1
        assert _leftovers(root), f"kill point {n}: nothing half-written (the test does not reach a kill point)"
        out = Transaction(Root(root)).recover()
        assert out.ok, out.message
        assert _leftovers(root) == [], f"kill point {n}: left after recover: {_leftovers(root)}"
        assert diff_snapshots(original, snapshot(root)) == [], f"kill point {n}"
    else:
        pytest.fail("the install never completed")
    assert killed >= 10  # journal saves, blobs, /etc/group, the files, the symlink
