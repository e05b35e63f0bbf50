"""The transaction core on hand-made plans: every Edit type applied, reversed byte for byte,
reversed semantically after admin changes, and the journal's edge cases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kavsetup.integrate.edits import (
    AccountLine,
    DeriveFile,
    EnsureDir,
    IniValues,
    InsertBlock,
    MasterServices,
    Plan,
    SetParams,
    SwapIn,
    Symlink,
    WriteFile,
)
from kavsetup.integrate.files import Root, View
from kavsetup.integrate.transaction import SimulatedCrash, Transaction
from tests.support.integration import diff_snapshots, kav, make_root, snapshot

pytestmark = pytest.mark.root


def _root(tmp_path: Path) -> Path:
    return make_root(tmp_path, {
        "/etc/app.conf": "alpha = 1\nbeta = 2\n",
        "/etc/kav.conf": "[smtpscan.general]\nProtocol=lmtp\n",
        "/etc/master.cf": "smtp inet n - y - - smtpd\n",
        "/etc/mail/src.cf": "SParseLocal=98\nO QueueDirectory=/q\n",
        "/bin/prog": b"\x7fELF binary\0\1\2",
    })


def _plan() -> Plan:
    return Plan("test", (
        AccountLine("/etc/group", "filter", "filter:x:150:"),
        EnsureDir("/var", 0o755, 0, 0, only_create=True),
        EnsureDir("/var/spool", 0o755, 0, 0, only_create=True),
        EnsureDir("/var/spool/filter", 0o750, 0, 150),
        WriteFile("/etc/new.sh", "#!/bin/sh\n", 0o755),
        InsertBlock("/etc/app.conf", "blk", "gamma = 3", anchor=r"^alpha"),
        SetParams("/etc/app.conf", (("beta", "20"), ("delta", "4"))),
        MasterServices("/etc/master.cf", (("kav/unix", "kav unix - - n - 10 lmtp\n  -o x=y"),)),
        IniValues("/etc/kav.conf", (("smtpscan.general", "Protocol", "smtp"),
                                    ("smtpscan.limits", "MaxCheckTime", "90"))),
        DeriveFile("/etc/mail/src.cf.listen", "/etc/mail/src.cf", (("r", r"^SParseLocal", "R$* $#x"),),
                   ((r"^O QueueDirectory=.*$", "O QueueDirectory=/q2"),)),
        SwapIn("/bin/prog", "/bin/prog.orig", "#!/bin/sh\nexec wrapper\n", 0o755, 0o4711, -1, -1),
        Symlink("/etc/link", "/etc/app.conf"),
    ))


def test_apply_then_uninstall_is_byte_identical(tmp_path: Path) -> None:
    root = _root(tmp_path)
    original = snapshot(root)
    tx = Transaction(Root(root))
    out = tx.apply(_plan())
    assert out.ok
    assert (root / "etc/app.conf").read_text() == "alpha = 1\n# BEGIN kav4mailservers blk\ngamma = 3\n" \
        "# END kav4mailservers blk\nbeta = 20\ndelta = 4\n"
    assert os.readlink(root / "etc/link") == "/etc/app.conf"
    assert (root / "bin/prog.orig").stat().st_mode & 0o7777 == 0o4711
    assert (root / "etc/mail/src.cf.listen").read_text() == \
        "SParseLocal=98\n# BEGIN kav4mailservers r\nR$* $#x\n# END kav4mailservers r\nO QueueDirectory=/q2\n"
    dry = Transaction(Root(root)).uninstall(dry_run=True)
    assert "-beta = 20" in dry.diff and "+beta = 2" in dry.diff
    assert Transaction(Root(root)).uninstall().ok
    assert diff_snapshots(original, snapshot(root)) == []


def test_admin_changes_are_kept_and_ours_removed(tmp_path: Path) -> None:
    root = _root(tmp_path)
    assert Transaction(Root(root)).apply(_plan()).ok
    app = root / "etc/app.conf"
    app.write_text(app.read_text().replace("delta = 4", "delta = 44") + "admin = yes\n")
    kc = root / "etc/kav.conf"
    kc.write_text(kc.read_text() + "# admin comment\n")
    (root / "var/spool/filter/leftover").write_text("x")
    (root / "etc/link").unlink()
    out = Transaction(Root(root)).uninstall()
    assert out.ok
    assert app.read_text() == "alpha = 1\nbeta = 2\ndelta = 44\nadmin = yes\n"
    assert kc.read_text() == "[smtpscan.general]\nProtocol=lmtp\n# admin comment\n"
    notes = "\n".join(out.notes)
    assert "delta was changed since install" in notes
    assert "/var/spool/filter: could not restore" in notes  # not empty: kept, said so
    assert (root / "var/spool/filter/leftover").exists()


def test_block_markers_removed_by_admin_is_reported(tmp_path: Path) -> None:
    root = _root(tmp_path)
    plan = Plan("t", (InsertBlock("/etc/app.conf", "blk", "gamma = 3"),))
    assert Transaction(Root(root)).apply(plan).ok
    app = root / "etc/app.conf"
    app.write_text(app.read_text().replace("# BEGIN kav4mailservers blk\n", ""))
    out = Transaction(Root(root)).uninstall()
    assert any("block markers are gone" in n for n in out.notes)
    assert "gamma = 3" in app.read_text()


def test_crash_mid_plan_and_recover_every_step(tmp_path: Path) -> None:
    n = len(_plan().edits)
    for k in range(1, n + 1):
        root = _root(tmp_path / str(k))
        original = snapshot(root)

        def crash(step: int) -> None:
            raise SimulatedCrash(step)

        with pytest.raises(SimulatedCrash):
            Transaction(Root(root), fail_after=k, crash=crash).apply(_plan())
        assert Transaction(Root(root)).pending_state() == "installing"
        out = Transaction(Root(root)).recover()
        assert out.ok and "rolled back" in out.message
        assert diff_snapshots(original, snapshot(root)) == [], k


def test_interrupted_uninstall_is_completed(tmp_path: Path) -> None:
    root = _root(tmp_path)
    original = snapshot(root)
    assert Transaction(Root(root)).apply(_plan()).ok
    tx = Transaction(Root(root))
    tx.journal.load()
    tx.journal.state = "uninstalling"  # as if killed right after uninstall began
    code, out = kav("status", "--root", str(root))
    assert code == 1 and "INTERRUPTED" in out
    code, out = kav("recover", "--root", str(root))
    assert code == 0 and "uninstall was found and completed" in out
    assert diff_snapshots(original, snapshot(root)) == []


def test_dry_run_preview_lists_only_real_changes(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / "var").mkdir()
    summaries, diff = _plan().preview(View(Root(root)))
    assert "directory /var 0755 0:0" not in summaries
    assert "+gamma = 3" in diff and "# /bin/prog: binary content 14 -> 23 bytes" in diff
    assert "# /etc/link: absent -> symlink to /etc/app.conf" in diff
    assert "# /bin/prog.orig: absent -> file 4711" in diff


def test_corrupt_journal_is_one_line_error(tmp_path: Path) -> None:
    root = _root(tmp_path)
    assert Transaction(Root(root)).apply(_plan()).ok
    (root / "var/lib/kav/5.5/kav4mailservers/journal/journal.json").write_text("{not json")
    code, out = kav("uninstall", "--root", str(root))
    assert code == 1 and "unreadable journal" in out and len(out.strip().splitlines()) == 1


def test_swap_refuses_an_already_wrapped_program(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / "bin/prog").write_text("#!/bin/sh\n# kav4mailservers wrapper\n")
    out = Transaction(Root(root)).apply(Plan("t", (SwapIn("/bin/prog", "/bin/prog.orig", "x", 0o755, 0o4711, -1, -1),)))
    assert not out.ok and "already a kav4mailservers wrapper" in out.message
    assert not (root / "var/lib/kav").exists()
