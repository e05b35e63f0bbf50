"""runtime/prefork.py on its own: real forks and signals in a child interpreter (the supervisor
installs signal handlers and forks, which must not happen inside pytest itself)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime.prefork import StartupError, clean_stale_pid, clean_stale_socket, write_pid
from runtime.report import EventLog
from tests.support.procs import children, wait_for

REPO = Path(__file__).resolve().parents[2]


def _start(tmp_path: Path, work: str, size: int = 1, grace: float = 30.0,
           slow_enter: float = 0.0) -> subprocess.Popen[bytes]:
    script = textwrap.dedent(f"""
        import signal, sys, time
        from pathlib import Path
        from runtime.prefork import Supervisor
        from runtime.report import EventLog
        Supervisor.GRACE = {grace!r}
        _enter = Supervisor.enter_worker
        def slow_enter(self):  # widens the window between fork and the worker's signal set-up
            time.sleep({slow_enter!r})
            _enter(self)
        Supervisor.enter_worker = slow_enter
        log = EventLog({str(tmp_path / "log")!r})
        def work():
            {work}
        sup = Supervisor("test", log, work, {size}, on_hup=lambda: log.info("hup seen"),
                         owned=(Path({str(tmp_path / "owned")!r}),))
        sys.exit(sup.run(ready=lambda: log.info("ready")))
    """)
    (tmp_path / "owned").write_text("x")
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_workers_run_hup_reaches_the_daemon_term_stops_all_and_removes_owned_files(tmp_path: Path) -> None:
    proc = _start(tmp_path, "time.sleep(60); return 0", size=2)
    try:
        wait_for(lambda: len(children(proc.pid)) == 2, what="2 workers")
        os.kill(proc.pid, signal.SIGHUP)
        wait_for(lambda: "hup seen" in (tmp_path / "log").read_text(), what="reload hook")
        workers = children(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert not (tmp_path / "owned").exists()
    assert all(not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text() for pid in workers)


def test_shutdown_kills_a_worker_that_outlives_the_grace_period(tmp_path: Path) -> None:
    """A worker deaf to SIGTERM (stuck in a scan, or one that lost the signal) cannot hold the
    master's shutdown forever: after GRACE it is killed and the master exits."""
    proc = _start(tmp_path, "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600); return 0", grace=1.0)
    try:
        wait_for(lambda: len(children(proc.pid)) == 1, what="1 worker")
        time.sleep(0.5)  # the worker has installed its SIG_IGN
        worker = children(proc.pid)[0]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
    assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text()


def test_a_term_sent_to_a_worker_as_it_is_forked_is_not_lost(tmp_path: Path) -> None:
    """The window between fork and the worker's own signal set-up: a SIGTERM sent to a new worker
    there used to run the master's inherited handler in the child and vanish.  Each worker here is
    killed as soon as it exists (inside a window widened to 0.3 s), many times; every one must die
    of it (the master respawns)."""
    proc = _start(tmp_path, "time.sleep(600); return 0", size=4, slow_enter=0.3)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            for pid in children(proc.pid):
                if pid not in seen:
                    seen.add(pid)
                    os.kill(pid, signal.SIGTERM)
            time.sleep(0.01)
        survivors = [pid for pid in seen if Path(f"/proc/{pid}").exists()
                     and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]]
        assert len(seen) > 4 and not survivors, (len(seen), survivors)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(40)


def test_a_worker_dying_at_once_is_respawned_with_back_off_and_term_is_not_delayed(tmp_path: Path) -> None:
    proc = _start(tmp_path, "return 3")
    try:
        time.sleep(3)
        os.kill(proc.pid, signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(10) == 0
        assert time.monotonic() - t0 < 2, "SIGTERM waited for a back-off"
    finally:
        proc.kill()
    deaths = (tmp_path / "log").read_text().count("exited unexpectedly")
    # 0.4 + 0.8 + 1.6 s of back-off fit in 3 s: a handful of restarts, not a fork loop
    assert 2 <= deaths <= 5, deaths


def test_pid_file_and_stale_socket(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path / "log"))
    pid_path = tmp_path / "run" / "x.pid"
    write_pid(pid_path)
    assert pid_path.read_text() == f"{os.getpid()}\n" and pid_path.stat().st_mode & 0o777 == 0o644
    clean_stale_pid(pid_path, "x", (b"no-such-program",), log)  # our own pid: not "another instance"
    assert not pid_path.exists()
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_path.write_text(f"{dead.pid}\n")
    clean_stale_pid(pid_path, "x", (b"true",), log)
    assert not pid_path.exists() and "removing stale pid file" in (tmp_path / "log").read_text()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)  # live-instance"])
    try:
        wait_for(lambda: b"live-instance" in Path(f"/proc/{live.pid}/cmdline").read_bytes(), what="the child")
        pid_path.write_text(f"{live.pid}\n")
        with pytest.raises(StartupError, match="already running"):
            clean_stale_pid(pid_path, "x", (b"live-instance",), log)
    finally:
        live.kill()
        live.wait()
    plain = tmp_path / "not-a-socket"
    plain.write_text("keep me")
    with pytest.raises(StartupError, match="not a socket"):
        clean_stale_socket(plain)
    assert plain.read_text() == "keep me"
