"""The clamd protocol on aveserver's socket: raw commands, Debian's real clamdscan, optional TCP."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from runtime.engine.eicar import EICAR
from tests.support.engine import Server, instream, talk
from tests.support.procs import wait_for


def test_raw_commands(server: Server, tmp_path: Path) -> None:
    server.write_conf(**{"aveserver.options": {"StreamMaxLength": "4096"}})
    server.start()
    assert talk(server, b"zPING\0") == b"PONG\0"
    assert talk(server, b"nPING\n") == b"PONG\n"
    assert talk(server, b"PING\n") == b"PONG\n"
    assert talk(server, b"nVERSION\n").startswith(b"aveserver 5.5.0/1/")
    assert b"INSTREAM" in talk(server, b"zVERSIONCOMMANDS\0")
    half = len(EICAR) // 2
    assert talk(server, instream(EICAR[:half], EICAR[half:])) == b"stream: EICAR-Test-File FOUND\0"
    assert talk(server, instream(b"clean data")) == b"stream: OK\0"
    assert talk(server, instream(b"x" * 3000, b"y" * 3000)) == b"INSTREAM size limit exceeded. ERROR\0"
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_bytes(b"fine")
    (d / "sub" / "v.com").write_bytes(b"SUSP-" + EICAR)
    (d / "sub" / "w.com").write_bytes(EICAR)
    assert talk(server, f"zCONTSCAN {d}\0".encode()).split(b"\0")[:-1] == [
        f"{d}/sub/v.com: EICAR-Test-File (unknown) FOUND".encode(), f"{d}/sub/w.com: EICAR-Test-File FOUND".encode()]
    assert talk(server, f"zSCAN {d}\0".encode()) == f"{d}/sub/v.com: EICAR-Test-File (unknown) FOUND\0".encode()
    assert talk(server, f"nMULTISCAN {d}/a.txt\n".encode()) == f"{d}/a.txt: OK\n".encode()
    assert talk(server, f"nSCAN {d}/missing\n".encode()).endswith(b"No such file or directory. ERROR\n")
    # a session: several commands on one connection, answers numbered
    assert talk(server, b"zIDSESSION\0zPING\0zPING\0zEND\0") == b"1: PONG\x002: PONG\0"
    assert talk(server, b"zBOGUS\0") == b"UNKNOWN COMMAND\0"
    assert talk(server, b"zRELOAD\0") == b"RELOADING\0"
    wait_for(lambda: "reload complete" in server.log.read_text(), what="RELOAD")
    assert talk(server, b"zSHUTDOWN\0") == b""
    assert server.proc.wait(20) == 0 and not server.sock.exists()


@pytest.mark.skipif(not shutil.which("clamdscan"), reason="Debian package clamdscan not installed")
@pytest.mark.parametrize("mode", [[], ["--multiscan"], ["--stream"], ["--fdpass"]])
def test_real_clamdscan(server: Server, tmp_path: Path, mode: list[str]) -> None:
    server.start()
    conf = tmp_path / "clamd.conf"
    conf.write_text(f"LocalSocket {server.sock}\n")
    (tmp_path / "eicar.com").write_bytes(EICAR)
    (tmp_path / "clean.txt").write_bytes(b"just text\n")
    r = subprocess.run(["clamdscan", f"--config-file={conf}", "--no-summary", *mode,
                        str(tmp_path / "eicar.com"), str(tmp_path / "clean.txt")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.splitlines() == [f"{tmp_path}/eicar.com: EICAR-Test-File FOUND", f"{tmp_path}/clean.txt: OK"]
    ok = subprocess.run(["clamdscan", f"--config-file={conf}", "--no-summary", *mode, str(tmp_path / "clean.txt")],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{tmp_path}/clean.txt: OK"


def test_tcp_is_off_by_default_and_on_when_configured(server: Server) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server.start()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(20)
    server.write_conf(**{"aveserver.options": {"ClamdTcpPort": str(port)}})
    server.start()
    assert talk(server, b"zPING\0", tcp_port=port) == b"PONG\0"
    assert talk(server, instream(EICAR), tcp_port=port) == b"stream: EICAR-Test-File FOUND\0"
