"""Issue 11 item 7: before uninstall, mail an Exim or Sendmail listening instance holds for scanning
is moved into the MTA's main queue (``hand_back``), so ``dpkg -r`` strands nothing. Here on real
spool trees, a real daemon process and a real lock held by another process; the distro matrix's
``remove`` scenario does it with real Exim and Sendmail (``_strand_one``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from kavsetup.integrate.files import Root
from kavsetup.mta import common, exim, sendmail

LOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def _exim_spools(tmp_path: Path, *ids: str) -> tuple[Path, Path]:
    listen, main = tmp_path / "exim4-kav", tmp_path / "exim4"
    for spool in (listen, main):
        for d in ("input", "msglog", "db"):
            (spool / d).mkdir(parents=True)
    for ident in ids:
        (listen / "input" / f"{ident}-D").write_text(f"{ident}-D\nbody of {ident}\n")
        (listen / "input" / f"{ident}-H").write_text(f"{ident}-H\nheaders of {ident}\n")
        (listen / "msglog" / ident).write_text(f"log of {ident}\n")
    return listen, main


def test_exim_messages_move_whole_with_the_header_file_last(tmp_path: Path) -> None:
    listen, main = _exim_spools(tmp_path, "1aAAAA-000001-AB", "1aBBBB-000002-CD")
    (listen / "input" / "1aCCCC-000003-EF-H").write_text("no -D yet: still being received\n")
    held = exim.held_messages(listen, main)
    assert [m.ident for m in held] == ["1aAAAA-000001-AB", "1aBBBB-000002-CD"]
    assert [src.name for src, _dst in held[0].files] == ["1aAAAA-000001-AB-D", "1aAAAA-000001-AB",
                                                           "1aAAAA-000001-AB-H"]
    notes = common.hand_back(held, "exim", str(main))
    assert notes == [f"exim: moved 2 message(s) held for scanning into {main}; they are delivered unscanned "
                     "now that the scanner is removed"]
    assert sorted(p.name for p in (main / "input").iterdir()) == [
        "1aAAAA-000001-AB-D", "1aAAAA-000001-AB-H", "1aBBBB-000002-CD-D", "1aBBBB-000002-CD-H"]
    assert (main / "input" / "1aBBBB-000002-CD-D").read_text() == "1aBBBB-000002-CD-D\nbody of 1aBBBB-000002-CD\n"
    assert (main / "msglog" / "1aAAAA-000001-AB").read_text() == "log of 1aAAAA-000001-AB\n"
    assert [p.name for p in (listen / "input").iterdir()] == ["1aCCCC-000003-EF-H"]


def test_a_message_id_taken_in_the_main_queue_is_never_overwritten(tmp_path: Path) -> None:
    listen, main = _exim_spools(tmp_path, "1aAAAA-000001-AB")
    (main / "input" / "1aAAAA-000001-AB-H").write_text("another message\n")
    notes = common.hand_back(exim.held_messages(listen, main), "exim", str(main))
    assert notes == [f"exim: message 1aAAAA-000001-AB also exists in {main}; left in {listen / 'input'}"]
    assert (main / "input" / "1aAAAA-000001-AB-H").read_text() == "another message\n"
    assert (listen / "input" / "1aAAAA-000001-AB-D").exists()


def test_a_message_being_delivered_is_left_where_it_is(tmp_path: Path) -> None:
    listen, main = _exim_spools(tmp_path, "1aAAAA-000001-AB")
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(listen / "input" / "1aAAAA-000001-AB-D")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
        notes = common.hand_back(exim.held_messages(listen, main), "exim", str(main), wait=0.5)
    finally:
        locker.communicate("", timeout=10)
    assert notes == [f"exim: message 1aAAAA-000001-AB is locked (being delivered); left in {listen / 'input'}"]
    assert list((main / "input").iterdir()) == []
    assert common.hand_back(exim.held_messages(listen, main), "exim", str(main))[-1].startswith("exim: moved 1")


def test_a_delivery_attempt_ending_while_we_wait_is_followed(tmp_path: Path) -> None:
    """An attempt of the stopped listening instance still holds the lock; when it ends it has
    removed its journal (deferred: the message stays) or the whole message (delivered)."""
    listen, main = _exim_spools(tmp_path, "1aAAAA-000001-AB", "1aBBBB-000002-CD")
    for ident in ("1aAAAA-000001-AB", "1aBBBB-000002-CD"):
        (listen / "input" / f"{ident}-J").write_text("delivery journal\n")
    held = exim.held_messages(listen, main)
    assert [src.name for src, _dst in held[0].files][1] == "1aAAAA-000001-AB-J"
    attempts = [subprocess.Popen([sys.executable, "-c", LOCKER, str(listen / "input" / f"{ident}-D")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for ident in ("1aAAAA-000001-AB", "1aBBBB-000002-CD")]
    for a in attempts:
        assert a.stdout is not None and a.stdout.readline() == "locked\n"
    (listen / "input" / "1aAAAA-000001-AB-J").unlink()  # deferred again
    for name in ("1aBBBB-000002-CD-J", "1aBBBB-000002-CD-H", "1aBBBB-000002-CD-D"):  # delivered
        (listen / "input" / name).unlink()
    for a in attempts:
        a.stdin.close()  # type: ignore[union-attr]
    notes = common.hand_back(held, "exim", str(main), wait=10)
    for a in attempts:
        a.wait(timeout=10)
    assert notes == [f"exim: moved 1 message(s) held for scanning into {main}; they are delivered unscanned "
                     "now that the scanner is removed"]
    assert sorted(p.name for p in (main / "input").iterdir()) == ["1aAAAA-000001-AB-D", "1aAAAA-000001-AB-H"]
    assert list((listen / "input").iterdir()) == []


def test_sendmail_control_file_last_into_the_main_queue_subdirectories(tmp_path: Path) -> None:
    listen, main = tmp_path / "mqueue-kav", tmp_path / "mqueue"
    listen.mkdir()
    for sub in ("qf", "df"):
        (main / sub).mkdir(parents=True)
    for name in ("dfAB12345", "qfAB12345", "xfAB12345", "hfCD67890", "dfCD67890", "tfEF00000"):
        (listen / name).write_text(name + "\n")
    held = sendmail.held_messages(listen, main)
    assert [(m.ident, [d.relative_to(main).as_posix() for _s, d in m.files]) for m in held] == [
        ("CD67890", ["df/dfCD67890", "qf/hfCD67890"]),  # quarantined: a control file too
        ("AB12345", ["df/dfAB12345", "xfAB12345", "qf/qfAB12345"]),
    ]
    assert common.hand_back(held, "sendmail", str(main))[-1].startswith("sendmail: moved 2 message(s)")
    assert [p.name for p in listen.iterdir()] == ["tfEF00000"]  # a control file being written is not a message
    assert (main / "qf" / "qfAB12345").read_text() == "qfAB12345\n"


def test_stop_daemon_waits_until_the_listening_instance_is_gone(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    pidfile = tmp_path / "listen.pid"
    pidfile.write_text(f"{proc.pid}\n")
    live = Root("/")
    try:
        assert common.read_pid(live, str(pidfile)) == proc.pid
        notes = common.stop_daemon(live, str(pidfile), "exim: the listening instance", timeout=10)
        assert notes == [f"stopped exim: the listening instance (pid {proc.pid})"]
        assert proc.wait(timeout=5) == -15
    finally:
        if proc.poll() is None:
            proc.kill()
    assert common.stop_daemon(live, str(pidfile), "again") == []  # nothing runs under that pid any more
    assert common.read_pid(Root(tmp_path), "/listen.pid") is None  # only the live system has processes


def test_zombie_is_not_alive(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited, not yet reaped: a zombie
        with open(f"/proc/{proc.pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    pidfile = tmp_path / "pid"
    pidfile.write_text(str(proc.pid))
    try:
        assert os.path.exists(f"/proc/{proc.pid}") and not common.pid_alive(Root("/"), str(pidfile))
    finally:
        proc.wait()


def test_split_spool_subdirectory_is_created_like_the_spool(tmp_path: Path) -> None:
    """``split_spool_directory``: input/<c>/ and msglog/<c>/ are made as Exim would make them."""
    listen, main = _exim_spools(tmp_path)
    os.chmod(main, 0o750)  # noqa: S103 - as Debian-exim's spool
    for d in ("input", "msglog"):
        (listen / d / "B").mkdir()
    (listen / "input" / "B" / "1aAAAB-000001-AB-D").write_text("data\n")
    (listen / "input" / "B" / "1aAAAB-000001-AB-H").write_text("headers\n")
    (listen / "msglog" / "B" / "1aAAAB-000001-AB").write_text("log\n")
    assert common.hand_back(exim.held_messages(listen, main), "exim", str(main))[-1].startswith("exim: moved 1")
    for d in ("input", "msglog"):
        st = (main / d / "B").stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, main.stat().st_uid, main.stat().st_gid)
    assert sorted(p.name for p in (main / "input" / "B").iterdir()) == ["1aAAAB-000001-AB-D", "1aAAAB-000001-AB-H"]
