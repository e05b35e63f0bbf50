"""Journals written before the per-MTA code moved (issue 10 item 2) still uninstall.

The journal stores Edit data (type name and arguments), never module paths, so a root installed
by an older kavsetup must come back byte for byte — and an admin edit made after that install
must still be reversed edit by edit.  tests/fixtures/journals/<mta>.tar.gz were written by
commit c9af452 (tests/fixtures/journals/make.py) and hold the root before and after install.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.integration import diff_snapshots, kav, snapshot, unpack_journal_fixture

pytestmark = pytest.mark.root

MTAS = ("postfix", "sendmail", "exim", "qmail")


@pytest.mark.parametrize("mta", MTAS)
def test_old_journal_uninstalls_to_the_original_tree(tmp_path: Path, mta: str) -> None:
    before, installed = unpack_journal_fixture(tmp_path, mta)
    assert (installed / "var/lib/kav/5.5/kav4mailservers/journal/journal.json").is_file()
    code, out = kav("uninstall", "--root", str(installed))
    assert code == 0, out
    assert diff_snapshots(snapshot(before), snapshot(installed)) == []


def test_old_journal_reverses_an_admin_edit_semantically(tmp_path: Path) -> None:
    """main.cf changed after install: the SetParams edit rebuilt from the old journal removes
    our content_filter and keeps the admin's line."""
    before, installed = unpack_journal_fixture(tmp_path, "postfix")
    main_cf = installed / "etc/postfix/main.cf"
    main_cf.write_bytes(main_cf.read_bytes() + b"message_size_limit = 20480000\n")
    code, out = kav("uninstall", "--root", str(installed))
    assert code == 0, out
    expected = (before / "etc/postfix/main.cf").read_bytes() + b"message_size_limit = 20480000\n"
    assert main_cf.read_bytes() == expected
    assert b"content_filter" not in main_cf.read_bytes()
