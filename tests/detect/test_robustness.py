"""Damaged or odd trees: detection finishes, and says what is wrong in one line per problem."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kavsetup.detect import detect


def _etc_is_a_file(d: Path) -> None:
    (d / "etc").write_text("not a directory\n")


def _dirs_for_files(d: Path) -> None:
    (d / "usr/sbin/sendmail").mkdir(parents=True)
    (d / "etc/passwd").mkdir(parents=True)


def _garbage_rpmdb(d: Path) -> None:
    (d / "var/lib/rpm").mkdir(parents=True)
    (d / "var/lib/rpm/rpmdb.sqlite").write_text("garbage")
    (d / "usr/sbin").mkdir(parents=True)
    (d / "usr/sbin/postconf").write_bytes(b"\0mail_version=3.1.1\0")


def _split_without_conf_d(d: Path) -> None:
    (d / "etc/exim4").mkdir(parents=True)
    (d / "etc/exim4/update-exim4.conf.conf").write_text("dc_use_split_config='true'\n")
    (d / "usr/sbin").mkdir(parents=True)
    (d / "usr/sbin/exim4").write_bytes(b"\0Exim\0")
    os.symlink("exim4", d / "usr/sbin/sendmail")
    (d / "var/qmail/bin").mkdir(parents=True)
    os.symlink("/nowhere/qq", d / "var/qmail/bin/qmail-queue")


def _mailer_conf_to_nothing(d: Path) -> None:
    (d / "etc/mail").mkdir(parents=True)
    (d / "etc/mail/mailer.conf").write_text("sendmail\t/usr/local/sbin/nothing\n")
    (d / "etc/mail/sendmail.cf").write_text("no version line here\n")
    (d / "usr/libexec/sendmail").mkdir(parents=True)
    (d / "usr/libexec/sendmail/sendmail").write_bytes(b"\0@(#)Sendmail\0")


CASES: dict[str, tuple[Callable[[Path], None], str | None, tuple[str, ...]]] = {
    "empty": (lambda d: None, None, ()),
    "etc-is-a-file": (_etc_is_a_file, None, ()),
    "directories-for-files": (_dirs_for_files, None, ("/etc/passwd: is a directory, expected a file",
                                                      "/usr/sbin/sendmail: not recognised as any supported MTA")),
    "garbage-rpmdb": (_garbage_rpmdb, "postfix", ("/var/lib/rpm/rpmdb.sqlite: cannot read rpm database",
                                                  "/etc/postfix/main.cf: not found")),
    "split-without-conf.d": (_split_without_conf_d, "exim", (
        "/etc/exim4/conf.d: dc_use_split_config is true but the directory is missing",
        "/var/qmail/bin/qmail-queue: broken symbolic link (points to /nowhere/qq)")),
    "mailer-conf-to-nothing": (_mailer_conf_to_nothing, "sendmail", (
        "/etc/mail/mailer.conf: sendmail -> /usr/local/sbin/nothing: does not exist",
        "/etc/mail/sendmail.cf: no DZ (version) line")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_tree(case: str, tmp_path: Path) -> None:
    setup, active, expected = CASES[case]
    setup(tmp_path)
    system = detect(tmp_path)
    lines = [str(p) for p in system.problems]
    assert all("\n" not in line for line in lines)
    assert lines[0].startswith("/etc/os-release: operating system not recognised")
    for fragment in expected:
        assert any(line.startswith(fragment) for line in lines), lines
    assert (system.active.kind.value if system.active else None) == active
    system.to_json()  # serialisable whatever was found


def test_dot_dot_never_leaves_the_root(tmp_path: Path) -> None:
    from kavsetup.detect.rootfs import RootFS
    (tmp_path / "inner/etc").mkdir(parents=True)
    (tmp_path / "secret").write_text("outside the root\n")
    fs = RootFS(tmp_path / "inner")
    assert fs.read_text("/../secret") is None
    assert fs.read_text("/etc/../../../secret") is None
    assert not fs.lexists("/etc/../..") or fs._entry("/etc/../..") == tmp_path / "inner"


def test_missing_root_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kavsetup.cli import main
    assert main(["detect", "--root", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == f"kavsetup detect: {tmp_path / 'nope'}: not a directory\n"
