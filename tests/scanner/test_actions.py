"""Operations on files (guide 6.2.2-6.2.4, 5.3.3-5.3.5): exec with hostile names, moves, the
quarantine in the mail quarantine's format, backup and restore, cure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.scanner.actions import expand
from tests.support.scanner import EICAR, NASTY_NAMES, build_tree, env_for, mode_of, report_objects, write

REPO = Path(__file__).resolve().parents[2]


def test_exec_macros_never_run_an_attackers_name(kit, tmp_path: Path) -> None:
    """Every macro is one shell word: the names in NASTY_NAMES reach the command as data."""
    tree = build_tree(tmp_path / "t")
    calls = tmp_path / "calls"
    calls.mkdir()
    rec = write(tmp_path / "rec.py", "import sys, os, json\n"
                f"open(os.path.join({str(calls)!r}, str(os.getpid())), 'w').write(json.dumps(sys.argv[1:]))\n")
    cmd = f"exec {sys.executable} {rec} %FULLPATH%/%FILENAME% %VIRUSNAME% %FILENAME% %LIST% | cat"
    conf = kit.config(scanner__object={"OnInfected": cmd, "OnSuspicion": cmd},
                      scanner__container={"OnInfected": cmd})
    r = kit.scan(str(tree.root), conf=conf, cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    import json

    seen = [json.loads(p.read_text()) for p in calls.iterdir()]
    by_path = {argv[0]: argv for argv in seen}
    for name in NASTY_NAMES:
        full = str(tree.p("nasty") / name)
        argv = by_path[full]  # the whole path arrived as ONE argument, byte for byte
        assert argv[-2] == name
    # the container rule got the archive and a %LIST% file naming the member (removed afterwards)
    assert str(tree.p("archives/nested.tgz")) in by_path
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


def test_expand_is_single_pass_and_reads_the_guides_typo() -> None:
    out = expand("echo %FULLPATH%/FILENAME% %VIRUSNAME%", "/d/%VIRUSNAME%$(x)", ["V 1"])
    assert out == "echo /d/'%VIRUSNAME%$(x)' 'V 1'"


def test_remove_move_and_quarantine_in_the_mail_quarantine_format(kit, tmp_path: Path) -> None:
    area = tmp_path / "area"
    write(area / "a.com", EICAR, mode=0o640)
    write(area / "s.com", b"SUSP-" + EICAR)
    write(area / "w.com", b"WARN-" + EICAR)
    write(area / "c.com", b"CORR-" + EICAR)
    q = tmp_path / "q"
    conf = kit.config(scanner__object={"OnInfected": f"quarantine {q}", "OnSuspicion": "remove",
                                       "OnWarning": f"move {tmp_path}/warn", "OnCorrupted": "report"})
    r = kit.scan("-j3", str(area), conf=conf)
    objs = report_objects(r.stdout)
    assert "quarantined as" in objs[str(area / "a.com")]
    assert not (area / "a.com").exists() and not (area / "s.com").exists()
    assert (tmp_path / "warn" / "w.com").exists() and (area / "c.com").exists()
    # the mail quarantine's own tool lists and shows the entry: one store format
    smtp = [sys.executable, "-m", "runtime.filter.main", "-c", str(conf), "quarantine"]
    env = env_for(cache=kit.cache)
    listed = subprocess.run([*smtp, "list", "--path", str(q)], capture_output=True, text=True, env=env)
    qid = listed.stdout.split()[0]
    raw = subprocess.run([*smtp, "show", qid, "--path", str(q), "--raw"], capture_output=True, env=env)
    assert raw.stdout == EICAR
    assert EICAR not in b"".join(p.read_bytes() for p in q.iterdir())  # encrypted at rest
    assert "quarantined 1" in r.stdout and "removed 1" in r.stdout and "moved 1" in r.stdout


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files another owner")
def test_backup_replaces_earlier_copy_and_restore_gives_mode_and_owner(kit, tmp_path: Path) -> None:
    area = tmp_path / "area"
    f = write(area / "doc.com", b"CURE-" + EICAR, mode=0o604)
    os.chown(f, 65534, 65534)
    bdir = tmp_path / "backup"
    conf = kit.config(scanner__path={"BackupPath": str(bdir)}, scanner__options={"UseIChecker": "no"})
    r1 = kit.scan("-i2", str(area), conf=conf)
    assert r1.returncode == 5, r1.stdout + r1.stderr  # everything found was disinfected
    assert f.read_bytes() == b"CURE" and mode_of(f) == 0o604 and f.stat().st_uid == 65534
    first = sorted(bdir.glob("*.kavq"))
    # the same file, infected again and removed this time: its backup copy is replaced, not added
    f.write_bytes(EICAR + b"\n")
    r2 = kit.scan("-i3", str(area), conf=conf)
    assert r2.returncode == 4 and not f.exists()
    second = sorted(bdir.glob("*.kavq"))
    assert len(first) == len(second) == 1 and first != second
    assert EICAR not in second[0].read_bytes()
    env = env_for(cache=kit.cache)
    listed = subprocess.run([sys.executable, "-m", "runtime.scanner", "-c", str(conf), "--list-backup"],
                            capture_output=True, text=True, env=env)
    assert str(f) in listed.stdout and "0604" in listed.stdout
    back = subprocess.run([sys.executable, "-m", "runtime.scanner", "-c", str(conf), "--restore", str(f)],
                          capture_output=True, text=True, env=env)
    assert back.returncode == 0, back.stderr
    assert f.read_bytes() == EICAR + b"\n" and mode_of(f) == 0o604
    assert (f.stat().st_uid, f.stat().st_gid) == (65534, 65534)
    # never restored through a link planted in the path
    os.rename(area, tmp_path / "real")
    os.symlink(tmp_path / "real", area)
    bad = subprocess.run([sys.executable, "-m", "runtime.scanner", "-c", str(conf), "--restore", str(f)],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 7 and "symbolic link" in bad.stderr


def test_cure_rewrites_mail_and_keeps_mode(kit, tmp_path: Path) -> None:
    mail = (b"From: a@b\r\nSubject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=c.com\r\n\r\nCURE-" + EICAR + b"\r\n--XX--\r\n")
    m = write(tmp_path / "area" / "msg.eml", mail, mode=0o600)
    r = kit.scan("-i2", str(m.parent))
    assert r.returncode == 5, r.stdout
    assert b"hello" in m.read_bytes() and EICAR not in m.read_bytes() and mode_of(m) == 0o600
    objs = report_objects(r.stdout)
    assert objs[str(m) + "/c.com"].startswith("CURED")


def test_a_directory_swapped_for_a_link_after_the_scan_redirects_nothing(tmp_path: Path) -> None:
    """Between scan and action a user replaces the scanned file's directory by a link to a
    directory holding a file of the same name (think /etc and passwd): nothing there is touched."""
    from runtime.engine.verdict import ObjectResult, Status, Verdict
    from runtime.scanner.actions import Executor, Policy

    user_dir = tmp_path / "home" / "u"
    f = write(user_dir / "passwd", EICAR)
    st = f.stat()
    victim = write(tmp_path / "etc" / "passwd", "root:x:0:0\n")
    os.rename(user_dir, tmp_path / "home" / "u.moved")
    os.symlink(tmp_path / "etc", user_dir)
    v = Verdict(Status.INFECTED, [ObjectResult(str(f), Status.INFECTED, "EICAR-Test-File")], path=str(f))
    for actions in ([("remove", "")], [("movepath", str(tmp_path / "jail"))]):
        out = Executor(Policy(object_actions={"OnInfected": actions})).apply(str(f), st, v)
        assert out.errors and not out.gone, out
        assert victim.read_text() == "root:x:0:0\n"
    cured = Verdict(Status.CURED, [ObjectResult(str(f), Status.CURED, "x")], cured=b"CURE", path=str(f))
    out = Executor(Policy()).apply(str(f), st, cured)
    assert out.errors and victim.read_text() == "root:x:0:0\n"
    # the same file, not swapped: acted upon
    os.unlink(user_dir)
    os.rename(tmp_path / "home" / "u.moved", user_dir)
    out = Executor(Policy(object_actions={"OnInfected": [("remove", "")]})).apply(str(f), st, v)
    assert out.removed and not f.exists()


@pytest.mark.skipif(shutil.which("zip") is None or shutil.which("unzip") is None, reason="needs Info-ZIP")
def test_vox_sh_disinfects_archives_as_the_container_rule(kit, tmp_path: Path) -> None:
    """5.3.3.1: OnInfected=exec .../contrib/vox.sh %FULLPATH%/%FILENAME% in [scanner.container]."""
    import io
    import tarfile
    import zipfile

    from tests.support.scanner import tgz_bytes, wrapper_bin, zip_bytes

    area = tmp_path / "area with space"
    z = write(area / "mixed.zip", zip_bytes({"ok.txt": b"ok\n", "bad/eicar.com": EICAR, "c.com": b"CURE-" + EICAR}),
              mode=0o640)
    t = write(area / "a'b.tgz", tgz_bytes({"note.txt": b"note\n", "in ner.zip": zip_bytes({"e.com": EICAR}),
                                          "keep me.txt": b"k\n"}))
    vox = REPO / "pkg" / "common" / "vox.sh"
    conf = kit.config(scanner__container={"OnInfected": f"exec {vox} %FULLPATH%/%FILENAME%"})
    env = kit.env(KAV_CONFIG=str(conf), KAVSCANNER=str(wrapper_bin(tmp_path / "bin") / "kavscanner"))
    from tests.support.scanner import run

    r = run(["-c", str(conf), "--no-ichecker", str(area)], env)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "disinfected" in r.stderr
    with zipfile.ZipFile(z) as zf:
        names = {n for n in zf.namelist() if not n.endswith("/")}
        assert names == {"ok.txt", "c.com"} and zf.read("c.com") == b"CURE"
    assert mode_of(z) == 0o640
    with tarfile.open(fileobj=io.BytesIO(t.read_bytes())) as tf:
        assert {m.name.lstrip("./") for m in tf.getmembers() if m.isfile()} == {"note.txt", "keep me.txt"}
    again = run(["-c", str(conf), "--no-ichecker", str(area)], env)
    assert again.returncode == 0, again.stdout  # nothing left to find


def test_the_guides_semicolon_action_list_with_hostile_names(kit, tmp_path: Path) -> None:
    """5.3.4's example, typo included: OnInfected=exec mv %FULLPATH%/FILENAME% /tmp/infected/%FILENAME%;
    chmod -x /tmp/infected/%FILENAME% — and a verb after an exec: quarantine; exec ... (runs after)."""
    area = tmp_path / "area"
    names = ["plain.com", "$(touch PWNED).com", "a b'c\".com", "new\nline.com"]
    for n in names:
        write(area / n, EICAR, mode=0o755)
    write(area / "s.com", b"SUSP-" + EICAR)
    jail = tmp_path / "infected"
    jail.mkdir()
    q = tmp_path / "q"
    conf = kit.config(scanner__object={
        "OnInfected": f"exec mv %FULLPATH%/FILENAME% {jail}/%FILENAME%; chmod -x {jail}/%FILENAME%",
        "OnSuspicion": f"quarantine {q}; exec printf '%s\\n' %FILENAME% >> {tmp_path}/after.txt",
    })
    r = kit.scan(str(area), conf=conf, cwd=tmp_path)
    assert r.returncode == 4, r.stdout + r.stderr
    for n in names:
        assert (jail / n).read_bytes() == EICAR and mode_of(jail / n) == 0o644, n
        assert not (area / n).exists()
    assert not (area / "s.com").exists() and len(list(q.glob("*.kavq"))) == 1
    assert (tmp_path / "after.txt").read_text() == "s.com\n"  # the exec after the quarantine ran
    assert not list(tmp_path.rglob("PWNED"))
