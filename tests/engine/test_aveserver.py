"""aveserver as a real process: lifecycle (6.4), reload (6.4.1), termination (6.4.2), aveclient, API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runtime.engine.client import AveClient, AveServerError, AveServerUnavailable
from runtime.engine.eicar import EICAR
from runtime.engine.verdict import Status
from tests.support.engine import REPO, Server
from tests.support.procs import can_connect, wait_for
from tests.support.procs import children as _children

BODY_HIT = b"...kav4test--signed..."  # matches conftest's Test.Body.Sig
LOG_LINE = r"^\[\d\d/\d\d/\d\d \d\d:\d\d:\d\d [FEWIAD]\] "


def aveclient(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime.engine.aveclient", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_start_serve_and_terminate(server: Server) -> None:
    server.write_conf(**{"aveserver.options": {"LocalSocketPermission": "0660"}})
    server.start()
    assert server.pid() == server.proc.pid
    assert (server.sock.stat().st_mode & 0o777) == 0o660
    wait_for(lambda: len(_children(server.proc.pid)) == 2, what="2 workers")
    with AveClient(server.sock) as c:
        assert c.ping()
        assert c.version()["records"] == 1
        assert c.scan_bytes(BODY_HIT, "x.bin").names == ["Test.Body.Sig"]
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    assert not server.sock.exists() and not server.pidfile.exists()
    import re

    lines = server.log.read_text().splitlines()
    assert all(re.match(LOG_LINE, ln) for ln in lines)
    text = "\n".join(lines)
    assert "aveserver started" in text and '"x.bin" INFECTED Test.Body.Sig' in text and "aveserver stopped" in text


CLIENT_CODES = [(EICAR, 4), (b"CURE-" + EICAR, 4), (b"DELE-" + EICAR, 4), (b"WARN-" + EICAR, 3),
                (b"SUSP-" + EICAR, 2), (b"CORR-" + EICAR, 8), (b"ERRO-" + EICAR, 7), (b"clean\n", 0)]


def test_aveclient_exit_codes(server: Server, tmp_path: Path) -> None:
    server.start()
    for i, (data, code) in enumerate(CLIENT_CODES):
        f = tmp_path / f"obj{i}.com"
        f.write_bytes(data)
        r = aveclient("-p", str(server.sock), "-s", str(f))
        assert r.returncode == code, (data[:5], r.stdout, r.stderr)
        if code == 4:
            assert "INFECTED" in r.stdout.splitlines()[0]
    # several files: the worst result wins
    files = [str(tmp_path / f"obj{i}.com") for i in (7, 4, 0)]
    assert aveclient("-p", str(server.sock), "-s", *files).returncode == 4
    # password-protected archive
    (tmp_path / "s.txt").write_bytes(EICAR)
    subprocess.run(["zip", "-q", "-P", "pw", "-j", str(tmp_path / "p.zip"), str(tmp_path / "s.txt")], check=True)
    assert aveclient("-p", str(server.sock), "-s", str(tmp_path / "p.zip")).returncode == 6
    # all disinfected: CURE- is rewritten, DELE- is removed
    cure, dele = tmp_path / "obj1.com", tmp_path / "obj2.com"
    r = aveclient("-p", str(server.sock), "--cure", "-s", str(cure), str(dele))
    assert r.returncode == 5, r.stdout + r.stderr
    assert cure.read_bytes() == b"CURE" and not dele.exists()
    assert aveclient("-p", str(server.sock), "-s", str(tmp_path / "missing")).returncode == 8
    assert aveclient("-p", str(server.root / "nosuch.sock"), "-s", str(cure)).returncode == 1
    assert aveclient("-p", str(server.sock)).returncode == 9
    assert aveclient("--bogus").returncode == 9


def test_client_api_and_failures(server: Server, tmp_path: Path) -> None:
    server.write_conf(**{"aveserver.options": {"StreamMaxLength": "1000"}})
    server.start()
    with AveClient(server.sock, timeout=10) as c:
        v = c.scan_bytes(b"CURE-" + EICAR, "att.com", cure=True)
        assert v.status is Status.CURED and v.cured == b"CURE"
        f = tmp_path / "f.com"
        f.write_bytes(b"SUSP-" + EICAR)
        assert c.scan_file(f).status is Status.SUSPICIOUS
        with pytest.raises(AveServerError) as err:
            c.scan_bytes(b"x" * 2000, "big")
        assert err.value.code == 413
        assert c.scan_bytes(b"small", "s").status is Status.CLEAN  # the client reconnects after 413
        assert c.scan_bytes(b"", "empty").status is Status.CLEAN
    with pytest.raises(AveServerUnavailable, match="cannot connect"):
        AveClient(tmp_path / "nothing-here").scan_bytes(b"x")
    # a socket that accepts and never answers: the client gives up after its timeout
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(tmp_path / "mute"))
    mute.listen(1)
    t0 = time.monotonic()
    with pytest.raises(AveServerUnavailable, match="did not answer"):
        AveClient(tmp_path / "mute", timeout=0.5).scan_bytes(b"x")
    assert time.monotonic() - t0 < 5
    mute.close()


def test_hup_reload_under_load_and_bad_database(server: Server) -> None:
    server.start()
    failures: list[str] = []
    done = threading.Event()
    counts = [0] * 4

    def load(i: int) -> None:
        client = AveClient(server.sock, timeout=30)
        while not done.is_set():
            try:
                v = client.scan_bytes(EICAR if i % 2 else BODY_HIT, f"o{i}")
                if v.status is not Status.INFECTED:
                    failures.append(f"{i}: {v.status}")
                counts[i] += 1
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                failures.append(f"{i}: {exc!r}")
            if counts[i] % 25 == 0:  # also open fresh connections during the reload
                client.close()
        client.close()

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    long_lived = AveClient(server.sock, timeout=30)
    assert long_lived.ping()
    old_workers = set(_children(server.proc.pid))
    time.sleep(0.5)
    (server.bases / "new.ndb").write_text("Test.New.Sig:0:*:6e65777369676e6174757265\n")
    os.kill(server.pid(), signal.SIGHUP)
    wait_for(lambda: "reload complete" in server.log.read_text(), what="reload")

    def new_sig_served() -> bool:
        with AveClient(server.sock) as fresh:
            return fresh.scan_bytes(b"a newsignature here").names == ["Test.New.Sig"]

    wait_for(new_sig_served, timeout=5, what="new database served on new connections")
    assert long_lived.ping()  # the connection opened before the reload is still served
    # a bad new database is refused and the old one keeps serving
    (server.bases / "new.ndb").write_text("garbage\n")
    (server.bases / "test.ndb").write_text("also garbage\n")
    os.kill(server.pid(), signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.log.read_text(), what="refusal")
    with AveClient(server.sock) as fresh:
        assert fresh.scan_bytes(b"a newsignature here").names == ["Test.New.Sig"]
    time.sleep(0.5)
    done.set()
    for t in threads:
        t.join(30)
    long_lived.close()
    assert not failures, failures[:5]
    assert min(counts) > 5, counts
    log = server.log.read_text()
    assert "still serving the previous database" in log and "no usable signature" in log
    # the retired generation exits once its connections are closed
    wait_for(lambda: not (old_workers & set(_children(server.proc.pid))), what="old workers gone")


def test_kill9_leaves_stale_files_that_the_next_start_removes(server: Server) -> None:
    server.start()
    server.kill_tree()
    assert server.sock.exists() and server.pidfile.exists()
    server.start()
    assert AveClient(server.sock).ping()
    log = server.log.read_text()
    assert "removing stale pid file" in log and "removing stale socket" in log


def test_second_instance_is_refused(server: Server) -> None:
    server.start()
    second = subprocess.run([sys.executable, "-m", "runtime.engine.server", "-c", str(server.conf)], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1 and "already running" in second.stderr
    assert AveClient(server.sock).ping()


def test_not_a_socket_is_never_removed(server: Server) -> None:
    server.sock.parent.mkdir(parents=True)
    server.sock.write_text("precious")
    server.start(wait=False)
    assert server.proc.wait(30) == 1
    assert server.sock.read_text() == "precious"


def _wait_gone(pid: int) -> None:
    def gone() -> bool:  # a daemon is not our child: once dead it may linger as a zombie of init
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return True

    wait_for(gone, what=f"pid {pid} to exit")


@pytest.mark.parametrize("mode", ["normal", "fast"])
def test_detach_startup_modes(server: Server, mode: str) -> None:
    server.write_conf(**{"aveserver.options": {"DetachFromTerminal": "yes", "StartupMode": mode}})
    r = subprocess.run([sys.executable, "-m", "runtime.engine.server", "-c", str(server.conf)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    if mode == "normal":  # normal: back only once the database is loaded and the socket serves
        assert can_connect(server.sock)
    wait_for(lambda: server.pidfile.exists() and can_connect(server.sock), what="daemon")
    pid = server.pid()
    assert AveClient(server.sock).ping()
    os.kill(pid, signal.SIGTERM)
    _wait_gone(pid)
    assert not server.sock.exists() and not server.pidfile.exists()


def test_normal_mode_reports_a_bad_database_fast_mode_only_logs_it(server: Server) -> None:
    (server.bases / "test.ndb").write_text("nothing usable\n")
    server.write_conf(**{"aveserver.options": {"DetachFromTerminal": "yes", "StartupMode": "normal"}})
    r = subprocess.run([sys.executable, "-m", "runtime.engine.server", "-c", str(server.conf)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no usable signature" in r.stderr
    server.write_conf(**{"aveserver.options": {"DetachFromTerminal": "yes", "StartupMode": "fast"}})
    r = subprocess.run([sys.executable, "-m", "runtime.engine.server", "-c", str(server.conf)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0  # 6.4: fast mode returns before the databases are read
    wait_for(lambda: "cannot start" in server.log.read_text(), what="fatal line")
    assert "F] aveserver: cannot start" in server.log.read_text() and not server.sock.exists()


def test_a_killed_worker_is_replaced(server: Server) -> None:
    server.start()
    wait_for(lambda: len(_children(server.proc.pid)) == 2, what="2 workers")
    victim = _children(server.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "exited unexpectedly" in server.log.read_text(), what="master notices")
    wait_for(lambda: len(_children(server.proc.pid)) == 2 and victim not in _children(server.proc.pid),
             what="replacement worker")
    with AveClient(server.sock) as c:
        assert c.scan_bytes(EICAR).status is Status.INFECTED


def test_sigterm_finishes_the_scan_in_flight(server: Server) -> None:
    import zlib

    server.write_conf(**{"aveserver.limits": {"MaxRatio": "100000000", "MaxUnpackedSize": "2000000000"}})
    server.start()
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    slow = b"".join(comp.compress(b"\0" * (1 << 20)) for _ in range(300)) + comp.flush()
    result: list[object] = []

    def scan() -> None:
        try:
            result.append(AveClient(server.sock, timeout=60).scan_bytes(slow, "slow.gz"))
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            result.append(exc)

    t = threading.Thread(target=scan)
    t.start()
    wait_for(lambda: any(c for c in _children(server.proc.pid)
                         if float(Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1].split()[11]) > 20),
             timeout=20, what="a worker busy scanning")
    server.proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert server.proc.wait(30) == 0
    assert len(result) == 1 and getattr(result[0], "status", None) is Status.CLEAN, result
