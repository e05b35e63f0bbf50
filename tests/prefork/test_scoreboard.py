"""The pre-fork scoreboard (issue 18: busy/idle workers) with real forked workers in a child
interpreter, and the checks a reader makes before it believes a board."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from runtime.prefork import Scoreboard, read_scoreboard, scoreboard_path
from tests.support.procs import children, wait_for

REPO = Path(__file__).resolve().parents[2]

# Every worker marks a semaphore through the supervisor; the one that wins the flock holds it
# (is busy) until the test creates "release", the others stay idle.
WORK = """
import fcntl, threading, time
from pathlib import Path
from runtime.prefork import Supervisor
from runtime.report import EventLog
tmp = Path({tmp!r})
log = EventLog(str(tmp / "log"))
def work():
    slots = sup.marking(threading.BoundedSemaphore(2))
    gate = open(tmp / "gate", "a")
    try:
        fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        time.sleep(120)
        return 0
    with slots:
        while not (tmp / "release").exists():
            time.sleep(0.05)
    time.sleep(120)
    return 0
sup = Supervisor("test", log, work, 3, scoreboard=tmp / "run" / "test.scoreboard")
raise SystemExit(sup.run())
"""


def _board(tmp_path: Path) -> list[tuple[int, int]] | None:
    return read_scoreboard(tmp_path / "run" / "test.scoreboard", (os.getuid(),))


def test_workers_mark_busy_and_idle_and_the_board_follows_respawns_and_stop(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORK.format(tmp=str(tmp_path)))], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        wait_for(lambda: (b := _board(tmp_path)) is not None and sum(n for _, n in b) == 1 and len(b) == 3,
                 what="3 workers on the board, one busy")
        board = _board(tmp_path)
        assert board is not None and {pid for pid, _ in board} == set(children(proc.pid))
        assert (tmp_path / "run" / "test.scoreboard").stat().st_mode & 0o777 == 0o644
        (tmp_path / "release").touch()
        wait_for(lambda: [n for _, n in _board(tmp_path) or [(0, 1)]] == [0, 0, 0], what="all idle again")

        victim = board[0][0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: (b := _board(tmp_path)) is not None and len(b) == 3 and victim not in {p for p, _ in b},
                 what="the replacement worker on the board, the dead one gone")

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
    assert not (tmp_path / "run" / "test.scoreboard").exists()
    assert _board(tmp_path) is None


def test_a_board_left_by_a_killed_master_is_not_believed(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORK.format(tmp=str(tmp_path)))], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        wait_for(lambda: (b := _board(tmp_path)) is not None and len(b) == 3, what="3 workers")
        workers = children(proc.pid)
        proc.kill()
        proc.wait(10)
        wait_for(lambda: all(not Path(f"/proc/{p}").exists() for p in workers), what="workers gone with the master")
    finally:
        proc.kill()
    assert (tmp_path / "run" / "test.scoreboard").exists()  # kill -9 removes nothing ...
    assert _board(tmp_path) is None  # ... but a dead master's board reads as no board


def test_a_reader_trusts_only_a_regular_file_its_owner_alone_can_write(tmp_path: Path) -> None:
    path = scoreboard_path(tmp_path / "x.pid")
    assert path == tmp_path / "x.scoreboard"
    board = Scoreboard(path)
    board.assign(board.claim(), os.getpid())
    assert read_scoreboard(path, (os.getuid(),)) == [(os.getpid(), 0)]
    board.slot = board.owner[os.getpid()]
    with board.marking(open(os.devnull)):  # any context manager: its holders count as busy
        assert read_scoreboard(path, (os.getuid(),)) == [(os.getpid(), 1)]
    assert read_scoreboard(path, (os.getuid(),)) == [(os.getpid(), 0)]

    link = tmp_path / "link.scoreboard"
    link.symlink_to(path)
    assert read_scoreboard(link, (os.getuid(),)) is None
    path.chmod(0o664)
    assert read_scoreboard(path, (os.getuid(),)) is None
    path.chmod(0o644)
    if os.getuid() != 0:
        assert read_scoreboard(path, ()) is None  # owned by someone who is neither root nor the daemon
    path.write_bytes(b"x" * Scoreboard.SIZE)  # not a board
    assert read_scoreboard(path, (os.getuid(),)) is None
