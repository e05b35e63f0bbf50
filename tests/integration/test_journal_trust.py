"""Issue 11 item 1: root replays the installer journal only when no other account could have
written it (root-owned, 0600/0700, no directory above it writable by others). The reproduced
attack: the filter account plants a journal whose WriteFile step creates /etc/sudoers.d/kav."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from kavsetup.integrate.edits import Plan, WriteFile
from kavsetup.integrate.files import Root
from kavsetup.integrate.transaction import Transaction
from tests.support.integration import kav, make_root

pytestmark = pytest.mark.root

STATE = "var/lib/kav/5.5/kav4mailservers"
KLUSER = 4242  # any uid that is not root and not the test's own


def _installed(tmp_path: Path) -> Path:
    root = make_root(tmp_path, {"/etc/app.conf": "x = 1\n"})
    os.makedirs(root / "etc/sudoers.d", exist_ok=True)
    assert Transaction(Root(root)).apply(Plan("test", (WriteFile("/etc/new.sh", "#!/bin/sh\n", 0o755),))).ok
    return root


def _plant(root: Path) -> None:
    """What kluser could do when it owned the state directory: rename journal/ and plant its own."""
    journal = root / STATE / "journal"
    doc = json.loads((journal / "journal.json").read_text())
    step = doc["steps"][0]
    step["changes"][0]["path"] = "/etc/sudoers.d/kav"
    shutil.rmtree(journal)
    (journal / "blobs").mkdir(parents=True)
    (journal / "journal.json").write_text(json.dumps(doc))
    for p in (journal, journal / "blobs", journal / "journal.json"):
        os.chown(p, KLUSER, KLUSER)


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")


def test_a_journal_planted_by_another_account_is_refused(tmp_path: Path) -> None:
    root = _installed(tmp_path)
    _plant(root)
    for cmd in ("uninstall", "recover", "status"):
        code, out = kav(cmd, "--root", str(root))
        assert code != 0, (cmd, out)
        assert "not root; refusing to trust the installer journal" in out, out
    assert not (root / "etc/sudoers.d/kav").exists()
    assert (root / "etc/new.sh").exists()  # nothing was replayed


@pytest.mark.parametrize("what, mode", [("journal/journal.json", 0o644), ("journal", 0o755),
                                        ("journal/blobs", 0o750)])
def test_a_journal_others_can_read_or_write_is_refused(tmp_path: Path, what: str, mode: int) -> None:
    root = _installed(tmp_path)
    os.chmod(root / STATE / what, mode)
    code, out = kav("uninstall", "--root", str(root))
    assert code == 1 and f"mode {mode:04o}" in out and "refusing to trust" in out, out
    assert len(out.strip().splitlines()) == 1
    assert (root / "etc/new.sh").exists()


@pytest.mark.parametrize("how", ["owner", "mode"])
def test_a_parent_directory_another_account_controls_is_refused(tmp_path: Path, how: str) -> None:
    root = _installed(tmp_path)
    state = root / STATE
    if how == "owner":
        os.chown(state, KLUSER, KLUSER)  # what postinst used to do: chown kluser:filter $STATE
    else:
        os.chmod(state, 0o775)  # noqa: S103 - the fault under test
    code, out = kav("uninstall", "--root", str(root))
    assert code == 1 and "refusing to trust the installer journal" in out, out
    assert (root / "etc/new.sh").exists()


def test_install_refuses_to_put_before_images_under_a_foreign_directory(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/etc/app.conf": "x = 1\n"})
    (root / STATE).mkdir(parents=True)
    os.chown(root / STATE, KLUSER, KLUSER)
    with pytest.raises(Exception, match="not root; refusing"):
        Transaction(Root(root)).apply(Plan("test", (WriteFile("/etc/new.sh", "#!/bin/sh\n", 0o755),)))
    assert not (root / "etc/new.sh").exists()


def test_a_symlinked_journal_file_is_refused(tmp_path: Path) -> None:
    root = _installed(tmp_path)
    j = root / STATE / "journal/journal.json"
    os.rename(j, root / "elsewhere.json")
    os.symlink(root / "elsewhere.json", j)
    code, out = kav("uninstall", "--root", str(root))
    assert code == 1 and "journal" in out
    assert (root / "etc/new.sh").exists()


def test_a_trusted_journal_still_uninstalls(tmp_path: Path) -> None:
    root = _installed(tmp_path)
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0, out
    assert not (root / "etc/new.sh").exists()
