"""Issue 11 item 5: with ``--root DIR`` a symlink in a parent directory never takes a write (or a
read) out of DIR: directories are resolved inside the tree, as a chroot would, and a path whose
directory still leads outside is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kavsetup.integrate.edits import Plan, WriteFile
from kavsetup.integrate.files import Root
from kavsetup.integrate.transaction import Transaction
from tests.support.integration import make_root, snapshot

pytestmark = pytest.mark.root


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "victim.conf").write_text("host file\n")
    return out


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_writes_through_a_parent_symlink_stay_in_the_tree(tmp_path: Path, how: str) -> None:
    outside = _outside(tmp_path)
    root = make_root(tmp_path, {})
    # /etc/kavlink -> the host's directory, absolute or climbing with ..
    target = str(outside) if how == "absolute" else os.path.relpath(outside, root / "etc")
    os.symlink(target, root / "etc/kavlink")
    before = snapshot(outside)
    out = Transaction(Root(root)).apply(Plan("test", (WriteFile("/etc/kavlink/victim.conf", "planted\n", 0o644),)))
    assert snapshot(outside) == before, "a write left the tree"
    assert (outside / "victim.conf").read_text() == "host file\n"
    if out.ok:  # resolved inside the tree, as chroot would: the file landed in DIR
        inside = root / str(outside).lstrip("/") if how == "absolute" else root / "outside"
        assert (inside / "victim.conf").read_text() == "planted\n"
        assert Transaction(Root(root)).uninstall().ok
    assert snapshot(outside) == before


def test_a_parent_symlink_resolved_in_the_tree_is_used(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/srv/etc/app.conf": "x\n"})
    os.symlink("/srv/etc", root / "etc/app")  # an absolute link meant for the tree itself
    r = Root(root)
    assert r.host("/etc/app/app.conf") == root / "srv/etc/app.conf"
    assert r.read("/etc/app/app.conf").data == b"x\n"


def test_reads_through_a_parent_symlink_do_not_leave_the_tree(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    root = make_root(tmp_path, {})
    os.symlink(str(outside), root / "etc/kavlink")
    assert Root(root).read("/etc/kavlink/victim.conf").kind == "absent"

