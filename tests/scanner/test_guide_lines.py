"""Every kavscanner command line the guide prints (5.3.1, 5.3.2, 5.3.3.1, 5.3.4, 6.2.4), run as
printed through /bin/sh on a tree we build, in a private mount namespace (see tests/support)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.scanner import (
    EICAR,
    NASTY_NAMES,
    build_tree,
    can_unshare,
    env_for,
    guide_line,
    make_bases,
    report_objects,
    wrapper_bin,
    write,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not can_unshare(), reason="needs root and unshare -m "
                                 "to bind test directories on /tmp, /home and /etc")]


class Box:
    """What the namespaced /tmp (``tmp``) and /home (``home``) contain, and the kit outside them."""

    def __init__(self, base: Path, kit: Path) -> None:
        self.tmp = base / "slash-tmp"
        self.home = base / "slash-home"
        self.kit = kit  # outside the bound /tmp and /home: wrapper, bases, engine cache
        self.tmp.mkdir()
        self.home.mkdir()
        self.bases = make_bases(self.kit / "bases")
        self.bin = wrapper_bin(self.kit / "bin")
        self.etc = base / "etc-overlay"

    def env(self, config: str | None = None) -> dict[str, str]:
        return env_for(cache=self.kit / "cache", KAV_TEST_BIN=str(self.bin),
                       **({"KAV_CONFIG": config} if config else {}))

    def conf(self, path: Path, extra: str = "") -> Path:
        write(path, f"[path]\nBasesPath={self.bases}\nIcheckerDbFile={self.kit}/ichecker.db\n"
                    f"LocalSocketPath={self.kit}/no-aveserver.sock\n\n"
                    f"[scanner.report]\nReportFileName=\n\n{extra}")
        return path

    def inside(self, p: Path) -> str:
        """The namespaced path of a file under ``tmp``."""
        return "/tmp/" + str(p.relative_to(self.tmp))


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    kit = Path(tempfile.mkdtemp(prefix="kavscanner-test-", dir="/var/tmp"))
    try:
        yield Box(tmp_path, kit)
    finally:
        shutil.rmtree(kit, ignore_errors=True)


def test_5_3_1_recursive_cure_or_delete_into_a_dated_log(box: Box) -> None:
    """kavscanner -Rlq -okavscanner-`date +%F`.log -i3 -ePASBME -j3 -mCn /tmp: cure what can be cured,
    delete what cannot (the whole archive when a member is infected), log everything but OK."""
    tree = build_tree(box.tmp / "data", outside=box.kit / "outside")
    conf = box.conf(box.kit / "kav.conf")
    r = guide_line("kavscanner -Rlq -okavscanner-`date +%F`.log -i3 -ePASBME -j3 -mCn /tmp",
                   {"/tmp": box.tmp}, box.env(str(conf)))
    assert r.stdout == ""  # -q: nothing on the console
    assert r.returncode == 4, r.stderr  # infected objects were found (aveclient's code)
    log = box.tmp / f"kavscanner-{time.strftime('%F')}.log"
    text = log.read_text(errors="surrogateescape")
    objs = report_objects(text)
    # cured in place, removed when no cure exists, archive removed for its member (5.3.1 warning)
    assert (tree.p("cure.com")).read_bytes() == b"CURE\r\n"
    assert objs["/tmp/data/cure.com"].startswith("CURED EICAR-Test-File (curable)")
    for gone in ("eicar.com", "dele.com", "body.bin", "archives/nested.tgz"):
        assert not tree.p(gone).exists(), gone
    assert objs["/tmp/data/eicar.com"].startswith("CUREFAILED EICAR-Test-File") and "removed" in objs[
        "/tmp/data/eicar.com"]
    assert '"/tmp/data/archives/nested.tgz"' in text  # -mCn: extended container format, then the member
    member = "/tmp/data/archives/nested.tgz/nested.tar/inner.zip/dir/eicar.com"
    assert objs[member].startswith("CUREFAILED EICAR-Test-File")
    # heuristic verdicts are only reported; clean files untouched and not listed (-j3)
    assert tree.p("susp.com").exists() and objs["/tmp/data/susp.com"].startswith("SUSPICIOUS")
    assert tree.p("warn.com").exists() and objs["/tmp/data/warn.com"].startswith("WARNING")
    assert objs["/tmp/data/archives/locked.zip/secret.txt"].startswith("PROTECTED")
    assert tree.p("clean.txt").read_text() == "just text\n" and "/tmp/data/clean.txt" not in objs
    # never followed out of the area: the virus behind two links is still there, not reported
    assert (tree.outside / "virus-outside.com").read_bytes() == EICAR
    assert not any("virus-outside" in p for p in objs)
    assert tree.p("fifo").exists() and "special files 1" in text
    assert "results:" in text and "signatures: 1 records" in text


def test_5_3_3_1_container_script_and_infected_list_on_slash(box: Box) -> None:
    """kavscanner -c kavscanner.conf.in -ePASE -qR -o /tmp/logfile.log -j3 -pi/tmp/infected_archive.lst /
    with [scanner.container] OnInfected=exec SCRIPT %FULLPATH%/%FILENAME% (the vox.sh hook)."""
    tree = build_tree(box.tmp / "srv", outside=box.kit / "outside", nasty=False)
    write(tree.p("mail.eml"), b"From: a@b\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
          + EICAR + b"\r\n")
    hook = write(box.kit / "vox.sh", f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> {box.kit}/vox.calls\n", mode=0o755)
    # "/" is the area: everything outside the namespaced /tmp is excluded by the configuration.
    others = ",".join(f"/{d}" for d in sorted(os.listdir("/")) if d != "tmp")
    box.conf(box.tmp / "kavscanner.conf.in",
             f"[scanner.options]\nExcludeDirs={others}\n\n"
             f"[scanner.container]\nOnInfected=exec {hook} %FULLPATH%/%FILENAME%\n")
    r = guide_line("kavscanner -c kavscanner.conf.in -ePASE -qR -o /tmp/logfile.log -j3 "
                   "-pi/tmp/infected_archive.lst /", {"/tmp": box.tmp}, box.env(), cwd="/tmp")
    assert r.returncode == 4, r.stderr + r.stdout
    assert r.stdout == ""
    listed = (box.tmp / "infected_archive.lst").read_text().splitlines()
    assert sorted(listed) == ["/tmp/srv/archives/nested.tgz", "/tmp/srv/body.bin", "/tmp/srv/cure.com",
                              "/tmp/srv/dele.com", "/tmp/srv/eicar.com"]
    # the container rule ran once, for the archive, with its full path as one argument
    assert (box.kit / "vox.calls").read_text().splitlines() == ["/tmp/srv/archives/nested.tgz"]
    objs = report_objects((box.tmp / "logfile.log").read_text())
    assert "/tmp/srv/mail.eml" not in objs  # -ePASE: no B, no M: mail is not opened
    assert tree.p("eicar.com").exists()  # no cure requested, object rule empty: reported only


def test_5_3_4_list_file_move_with_full_paths(box: Box) -> None:
    """kavscanner -@/tmp/download.lst -ePASBME -rq -i0 -o /tmp/report.log -j3 -mCn with
    OnInfected=movePath /tmp/infected in [scanner.object] and [scanner.container], Cure=no."""
    tree = build_tree(box.tmp / "dl", outside=box.kit / "outside")
    rules = "OnInfected=movePath /tmp/infected\n"
    conf = box.conf(box.kit / "kav.conf", f"[scanner.options]\nCure=no\n\n[scanner.object]\n{rules}\n"
                                          f"[scanner.container]\n{rules}")
    nasty = [n for i, n in enumerate(NASTY_NAMES) if i % 2 == 0]  # the infected ones
    lst = ["/tmp/dl/eicar.com", "/tmp/dl/cure.com", "/tmp/dl/archives", "/tmp/dl/docs", "/tmp/dl/susp.com",
           *(f"/tmp/dl/nasty/{n}" for n in nasty if "\n" not in n)]
    write(box.tmp / "download.lst", "\n".join(lst) + "\n")
    r = guide_line("kavscanner -@/tmp/download.lst -ePASBME -rq -i0 -o /tmp/report.log -j3 -mCn",
                   {"/tmp": box.tmp}, box.env(str(conf)))
    assert r.returncode == 4, r.stderr
    infected = box.tmp / "infected"
    assert (infected / "tmp/dl/eicar.com").read_bytes() == EICAR  # moved with its full path
    assert (infected / "tmp/dl/cure.com").exists()  # -i0: no cure, moved as infected
    assert (infected / "tmp/dl/archives/nested.tgz").exists()  # container rule: the archive moves
    for n in nasty:
        if "\n" not in n:
            assert (infected / "tmp/dl/nasty" / n).read_bytes() == EICAR
    assert not tree.p("eicar.com").exists()
    assert tree.p("susp.com").exists()  # OnSuspicion not set: reported only
    assert tree.p("dele.com").exists()  # not in the list: not scanned
    text = (box.tmp / "report.log").read_text(errors="surrogateescape")
    assert "/tmp/dl/dele.com" not in text
    assert "/tmp/dl/docs/deep/deeper/clean.bin" not in text and "deeper" not in text  # -r: no recursion
    assert not list(box.tmp.glob("PWNED*")) and not list(Path("/").glob("PWNED*"))


def test_6_2_4_backup_mode_actions_and_list_with_space(box: Box) -> None:
    """kavscanner -@ /tmp/downloads.lst -c scan_simple.conf with Cure=yes and MovePath per status."""
    tree = build_tree(box.tmp / "in", outside=box.kit / "outside", nasty=False)
    rules = ("OnInfected=MovePath /tmp/infected\nOnSuspicion=MovePath /tmp/suspicious\n"
             "OnWarning=MovePath /tmp/warning\n")
    box.conf(box.tmp / "scan_simple.conf", f"[scanner.options]\nCure=yes\n\n[scanner.object]\n{rules}\n"
                                           f"[scanner.container]\n{rules}\n[scanner.path]\nBackupPath=/tmp/backup\n")
    write(box.tmp / "downloads.lst", "/tmp/in\n")
    r = guide_line("kavscanner -@ /tmp/downloads.lst -c scan_simple.conf", {"/tmp": box.tmp}, box.env(),
                   cwd="/tmp")
    assert r.returncode == 4, r.stderr
    assert tree.p("cure.com").read_bytes() == b"CURE\r\n"  # cured in place, a backup kept
    assert list((box.tmp / "backup").glob("*.kavq"))
    assert (box.tmp / "infected/tmp/in/eicar.com").read_bytes() == EICAR  # cure failed: infected rule
    assert (box.tmp / "suspicious/tmp/in/susp.com").exists()
    assert (box.tmp / "warning/tmp/in/warn.com").exists()
    assert "CURED" in r.stdout  # no -q: the console shows the report lines


def test_5_3_2_the_packaged_cron_line_runs(box: Box) -> None:
    """The schedule shipped in pkg/common/kavscanner.cron, uncommented, run as cron would run its
    command: the guide's /opt path, -c /etc/kav/kavscanner.conf, /home (5.3.2)."""
    lines = [ln for ln in (REPO / "pkg/common/kavscanner.cron").read_text().splitlines() if ln.startswith("#0 ")]
    assert len(lines) == 1, "exactly one commented schedule line"
    fields = lines[0][1:].split()
    assert fields[:5] == ["0", "0", "*", "*", "*"] and fields[5] == "root"
    command = " ".join(fields[6:])
    assert command == "/opt/kav/5.5/kav4mailservers/bin/kavscanner -c /etc/kav/kavscanner.conf /home"
    build_tree(box.home / "u", outside=box.kit / "outside", nasty=False)
    write(box.home / "u" / "development" / "virus.com", EICAR)  # ExcludeDirs=/dev must not hide this
    box.conf(box.etc / "upper" / "kav" / "kavscanner.conf",
             "[scanner.options]\nExcludeDirs=/dev\n\n[scanner.report]\nReportFileName=/home/kavscanner.log\n")
    opt = box.kit / "opt-overlay"
    (opt / "upper/kav/5.5/kav4mailservers/bin").mkdir(parents=True)
    (opt / "upper/kav/5.5/kav4mailservers/bin/kavscanner").symlink_to(box.bin / "kavscanner")
    r = guide_line(command, {"/home": box.home}, box.env(), cwd="/", overlays={"/etc": box.etc, "/opt": opt})
    assert r.returncode == 4, r.stderr
    objs = report_objects((box.home / "kavscanner.log").read_text())
    assert objs["/home/u/development/virus.com"].startswith("INFECTED")
    assert objs["/home/u/eicar.com"].startswith("INFECTED")
    assert not Path("/etc/kav").exists() and not Path("/opt/kav").exists()  # the host is untouched
