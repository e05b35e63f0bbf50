"""The scanning area (guide 6.2.1): lists, recursion, exclusions, links, special and unreadable
files, vanished files — as the user sees them in the report and the exit code."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from runtime.engine.engine import Engine
from runtime.scanner.area import Area
from runtime.scanner.scan import scan_file
from tests.support.scanner import EICAR, as_user, build_tree, report_objects, write


def test_exclude_dirs_is_anchored_and_masks_match_names(kit, tmp_path: Path) -> None:
    root = tmp_path / "area"
    write(root / "dev" / "v.com", EICAR)
    write(root / "development" / "v.com", EICAR)
    write(root / "devices" / "x" / "v.com", EICAR)
    write(root / "keep" / "v.tmp", EICAR)
    write(root / "keep" / "v.com", EICAR)
    conf = kit.config(scanner__options={"ExcludeDirs": f"{root}/dev, {root}/devices/", "ExcludeMask": "*.tmp"})
    r = kit.scan("-j4", str(root), conf=conf)
    objs = report_objects(r.stdout)
    assert objs[f"{root}/development/v.com"].startswith("INFECTED")  # /dev does not exclude /development
    assert objs[f"{root}/keep/v.com"].startswith("INFECTED")
    assert objs[f"{root}/dev"].startswith("SKIPPED (excluded")
    assert objs[f"{root}/devices"].startswith("SKIPPED (excluded")
    assert objs[f"{root}/keep/v.tmp"].startswith("SKIPPED (excluded")
    assert f"{root}/dev/v.com" not in objs and f"{root}/devices/x/v.com" not in objs


def test_list_from_stdin_wins_over_paths_and_spaces_kept(kit, tmp_path: Path) -> None:
    a = write(tmp_path / "dir with space" / "a b.com", EICAR)
    b = write(tmp_path / "other" / "b.com", EICAR)
    r = kit.scan("-@-", str(b.parent), stdin=f"{a}\n\n{a}\n".encode())
    objs = report_objects(r.stdout)
    assert list(objs) == [str(a)]  # only the listed object (6.2.1); the path argument is ignored
    assert "INFECTED 1" in r.stdout  # listed twice, scanned once
    assert "paths on the command line are ignored" in r.stdout
    assert r.returncode == 4


def test_links_loops_and_special_files_are_skipped_and_counted(kit, tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "t", nasty=False)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tree.p("sock")))
    try:
        r = kit.scan("-j4", "-w", "2", str(tree.root), timeout=60)
    finally:
        sock.close()
    objs = report_objects(r.stdout)
    assert objs[str(tree.p("fifo"))] == "SKIPPED (fifo: not a regular file)"
    assert objs[str(tree.p("sock"))] == "SKIPPED (socket: not a regular file)"
    assert objs[str(tree.p("docs/loop"))] == "SKIPPED (symbolic link not followed)"
    assert objs[str(tree.p("link-to-virus.com"))] == "SKIPPED (symbolic link not followed)"
    assert not any("virus-outside" in p for p in objs)
    assert "special files 2, links not followed 3" in r.stdout
    # asked to follow: the loop ends (visited directories), the link out is followed by request
    r2 = kit.scan("-j4", "--follow-symlinks", str(tree.root), timeout=60)
    objs2 = report_objects(r2.stdout)
    assert objs2[str(tree.outside / "virus-outside.com")].startswith("INFECTED")  # under its real name
    assert r2.returncode == 4


def test_a_named_link_or_device_on_the_command_line(kit, tmp_path: Path) -> None:
    v = write(tmp_path / "v.com", EICAR)
    os.symlink(v, tmp_path / "named-link.com")
    r = kit.scan("-j4", str(tmp_path / "named-link.com"), "/dev/null", "/nonexistent/x")
    objs = report_objects(r.stdout)
    assert objs[str(v)].startswith("INFECTED")  # named on purpose: followed, reported under its real name
    assert objs["/dev/null"] == "SKIPPED (device: not a regular file)"
    assert objs["/nonexistent/x"] == "ERROR cannot read: No such file or directory"
    assert r.returncode == 4  # infected outranks the unreadable path


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to run as nobody")
def test_unreadable_file_is_reported_as_nobody(kit) -> None:
    top = Path(tempfile.mkdtemp(prefix="kavscanner-nobody-", dir="/var/tmp"))
    try:
        top.chmod(0o755)
        bases = top / "bases"
        shutil.copytree(kit.bases, bases)  # pytest's own tmp tree is 0700: nobody could not read it
        write(top / "ok.txt", "fine\n", mode=0o644)
        write(top / "secret.com", EICAR, mode=0o000)
        (top / "closed").mkdir(mode=0o700)
        write(top / "closed" / "x.com", EICAR)
        cache = top / "cache"
        cache.mkdir()
        os.chown(cache, pwd.getpwnam("nobody").pw_uid, -1)
        conf = write(top / "k.conf", f"[path]\nBasesPath={bases}\nIcheckerDbFile={cache}/ick.db\n"
                                     f"LocalSocketPath={top}/none.sock\n"
                                     "[scanner.report]\nReportFileName=\n", mode=0o644)
        import subprocess

        from tests.support.scanner import env_for, kavscanner_cmd

        r = subprocess.run(as_user([*kavscanner_cmd(), "-c", str(conf), "-j4", str(top)]), capture_output=True,
                           text=True, env=env_for(cache=cache, HOME=str(cache)), timeout=120)
        objs = report_objects(r.stdout)
        assert str(top / "secret.com") in objs, r.stdout + r.stderr
        assert objs[str(top / "secret.com")] == "ERROR cannot read: Permission denied", r.stdout + r.stderr
        assert objs[str(top / "closed")] == "ERROR cannot read: Permission denied"
        assert objs[str(top / "ok.txt")] == "OK"
        assert "unreadable 2" in r.stdout
        assert r.returncode == 8  # aveclient's I/O-error code
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_vanished_and_swapped_files_never_crash(tmp_path: Path) -> None:
    eng = Engine.load(tmp_path / "nobases" if False else _bases(tmp_path))
    gone = scan_file(eng, str(tmp_path / "never-there"), cure=False)
    assert gone.error == "No such file or directory" and gone.verdict is None
    os.mkfifo(tmp_path / "was-a-file")  # the walk saw a file; by open time it is a FIFO
    swapped = scan_file(eng, str(tmp_path / "was-a-file"), cure=False)
    assert swapped.skipped == "fifo" and swapped.verdict is None  # and open() did not block
    os.symlink("/etc/shadow", tmp_path / "now-a-link")
    assert scan_file(eng, str(tmp_path / "now-a-link"), cure=False).skipped == "link"
    # the walk itself: a directory removed while listed
    area = Area([str(tmp_path / "d")])
    write(tmp_path / "d" / "a", "x")
    write(tmp_path / "d" / "sub" / "f", "x")
    it = area.walk()
    assert next(it).kind == "file"  # d/a; d/sub is listed and will be entered next
    shutil.rmtree(tmp_path / "d" / "sub")
    rest = list(it)
    assert [(e.kind, e.what) for e in rest] == [("error", "No such file or directory")]  # reported, not raised


def _bases(tmp_path: Path) -> Path:
    d = tmp_path / "bases"
    d.mkdir()
    return d


def test_no_recursion_and_cross_fs(kit, tmp_path: Path) -> None:
    write(tmp_path / "top.com", EICAR)
    write(tmp_path / "sub" / "deep.com", EICAR)
    objs = report_objects(kit.scan("-r", str(tmp_path)).stdout)
    assert str(tmp_path / "top.com") in objs and str(tmp_path / "sub" / "deep.com") not in objs
    # -l (CrossFs=no): a file system mounted below the area (/proc, /dev, /sys...) is not entered
    root_dev = os.stat("/").st_dev
    mounts = [f"/{d}" for d in sorted(os.listdir("/"))
              if os.path.isdir(f"/{d}") and not os.path.islink(f"/{d}") and os.stat(f"/{d}").st_dev != root_dev]
    if not mounts:
        pytest.skip("no file system mounted directly below /")
    others = [f"/{d}" for d in os.listdir("/") if f"/{d}" != mounts[0]]
    stay = [(e.path, e.kind, e.what) for e in Area(["/"], cross_fs=False, exclude_dirs=others).walk()
            if e.path not in others]
    assert stay == [(mounts[0], "excluded", "other file system")]
    cross = Area(["/"], cross_fs=True, exclude_dirs=others).walk()  # -L: entered (first entry is enough)
    assert next(e for e in cross if e.path not in others).path.startswith(mounts[0] + "/")


def test_a_report_path_planted_as_a_link_is_refused(kit, tmp_path: Path) -> None:
    victim = write(tmp_path / "victim", "untouched\n")
    os.symlink(victim, tmp_path / "logfile.log")
    write(tmp_path / "area" / "v.com", EICAR)
    r = kit.scan("-q", "-o", str(tmp_path / "logfile.log"), str(tmp_path / "area"))
    assert r.returncode == 9 and "cannot open the report" in r.stderr
    assert victim.read_text() == "untouched\n"
