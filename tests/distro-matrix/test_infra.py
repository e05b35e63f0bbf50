"""The matrix's own machinery, on real files: snapshots, recipe keys, the table, unit parsing."""

from __future__ import annotations

import os
from pathlib import Path

from distro_matrix import snapshot
from distro_matrix.scenarios import Cell, Outcome
from distro_matrix.spec import FLAVOURS, RootSpec, all_specs
from distro_matrix.units import load


def _tree(root: Path) -> None:
    (root / "etc/postfix").mkdir(parents=True)
    (root / "etc/postfix/main.cf").write_text("myhostname = mta.test\n")
    (root / "etc/postfix/master.cf").write_text("smtp inet n - y - - smtpd\n")
    os.symlink("main.cf", root / "etc/postfix/link")


def test_snapshot_identical_tree_has_no_differences(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert snapshot.compare(snapshot.take(tmp_path, ["/etc/postfix"]), snapshot.take(tmp_path, ["/etc/postfix"])) == []


def test_snapshot_sees_content_mode_owner_link_added_removed(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = snapshot.take(tmp_path, ["/etc/postfix", "/etc/missing"])
    (tmp_path / "etc/postfix/main.cf").write_text("myhostname = mta.test \n")  # one byte
    os.chmod(tmp_path / "etc/postfix/master.cf", 0o600)
    os.chown(tmp_path / "etc/postfix", 0, 1) if os.geteuid() == 0 else None
    (tmp_path / "etc/postfix/link").unlink()
    os.symlink("master.cf", tmp_path / "etc/postfix/link")
    (tmp_path / "etc/postfix/new.cf").write_text("x\n")
    diff = "\n".join(snapshot.compare(before, snapshot.take(tmp_path, ["/etc/postfix", "/etc/missing"])))
    assert "/etc/postfix/main.cf:" in diff
    assert "/etc/postfix/master.cf: file 0644" in diff and "-> file 0600" in diff
    assert "/etc/postfix/link: link" in diff and "master.cf" in diff
    assert "/etc/postfix/new.cf: added" in diff
    if os.geteuid() == 0:
        assert "/etc/postfix: dir" in diff


def test_recipe_key_changes_with_the_recipe_only() -> None:
    a = RootSpec("bookworm", FLAVOURS["postfix"])
    assert a.key == RootSpec("bookworm", FLAVOURS["postfix"]).key
    assert a.key != RootSpec("trixie", FLAVOURS["postfix"]).key
    assert FLAVOURS["exim4-split"].preseed != FLAVOURS["exim4-unsplit"].preseed
    assert RootSpec("bookworm", FLAVOURS["exim4-split"]).key != RootSpec("bookworm", FLAVOURS["exim4-unsplit"]).key
    names = {s.name for s in all_specs()}
    assert {"bookworm-postfix", "trixie-exim4-split", "trixie-exim4-unsplit", "bookworm-sendmail"} <= names
    assert len(names) == 2 * len(FLAVOURS)


def test_table_marks_blocked_with_a_shared_footnote() -> None:
    from distro_matrix.cli import table

    cells = []
    for spec in all_specs(("bookworm",), ("postfix", "sendmail")):
        c = Cell(spec, None)
        c.outcomes = {"baseline": Outcome("pass", 1.25), "install": Outcome("blocked", 0, "no .deb: run make deb")}
        cells.append(c)
    text = table(cells, ("baseline", "install"))
    assert text.count("blocked [1]") == 2
    assert "[1] no .deb: run make deb" in text and "pass 1.2s" in text


def test_unit_parsing_reads_the_shipped_units() -> None:
    units = Path(__file__).resolve().parents[2] / "pkg/deb/debian/units"
    ave = load(units / "kav4mailservers-aveserver.service")
    assert ave.exec_start[0] == "/usr/sbin/aveserver" and "--foreground" in ave.exec_start
    scan = load(units / "kav4mailservers-smtpscanner.service")
    assert scan.user == "kluser" and scan.group == "filter"
