"""aveserver against an unprivileged local user (issue 11 items 2 and 3): started by root it serves
as its own account, its socket is 0660, a client that is neither root nor that account can neither
stop nor reload it, and no path a client names (a FIFO, /dev/zero, a symlink) stalls a worker.

The hostile client is a real process running as ``www-data`` on Debian's /usr/bin/python3 (stdlib
only, so the venv's location does not matter); the workers serve as ``nobody``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.engine.eicar import EICAR
from tests.support.engine import Server, instream, talk
from tests.support.filter import free_port
from tests.support.procs import children, wait_for

CLIENT = r"""
import json, socket, sys, time
path, cmds = sys.argv[1], json.loads(sys.argv[2])
out = []
for cmd in cmds:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    t0 = time.monotonic()
    s.sendall(cmd.encode())
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except socket.timeout:
        data += b"<timeout>"
    out.append([data.decode("utf-8", "replace"), time.monotonic() - t0])
    s.close()
print(json.dumps(out))
"""


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(pid)


@pytest.fixture
def root_server() -> Iterator[Server]:
    """A server under a /tmp tree every account may traverse (pytest's tmp is root-only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: aveserver must drop root itself")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 for the unprivileged client")
    for user in ("nobody", "www-data"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.skip(f"no {user} account")
    root = Path(tempfile.mkdtemp(prefix="kav-priv.", dir="/tmp"))
    root.chmod(0o755)
    srv = Server(root / "srv")
    (srv.root / "bases").mkdir(parents=True)
    srv.root.chmod(0o755)
    (srv.root / "bases" / "test.ndb").write_text("Test.Body.Sig:0:*:6b61763474657374{2-8}7369676e\n")
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def as_www_data(srv: Server, *cmds: str) -> list[tuple[str, float]]:
    out = subprocess.run(["/usr/bin/python3", "-c", CLIENT, str(srv.sock), json.dumps(list(cmds))],
                         user="www-data", group="www-data", extra_groups=[], capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return [tuple(x) for x in json.loads(out.stdout)]


def test_default_socket_is_0660_owned_by_the_serving_account(root_server: Server) -> None:
    root_server.write_conf(**{"aveserver.options": {"User": "nobody"}})
    root_server.start()
    st = root_server.sock.stat()
    nobody = pwd.getpwnam("nobody")
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    workers = children(root_server.proc.pid)
    assert workers
    # a worker drops right after its fork, before it accepts; the log line may come first
    wait_for(lambda: all(_uid(w) == nobody.pw_uid for w in workers), timeout=10, what="workers to drop to nobody")
    assert "workers serve as nobody" in root_server.log.read_text()


def test_unprivileged_client_cannot_stop_reload_or_stall(root_server: Server) -> None:
    port = free_port()
    # 0666 as the guide printed it: the worst case, any local account can connect
    root_server.write_conf(**{"aveserver.options": {"User": "nobody", "LocalSocketPermission": "0666",
                                                    "ClamdTcpPort": str(port), "Workers": "2"}})
    root_server.start()
    fifo = root_server.root / "fifo"
    os.mkfifo(fifo, 0o666)
    link = root_server.root / "link"
    link.symlink_to("/etc/hostname")
    workers = sorted(children(root_server.proc.pid))
    replies = as_www_data(root_server, "zSHUTDOWN\0", "zRELOAD\0", f"zSCAN {fifo}\0", "zSCAN /dev/zero\0",
                          f"zSCAN {link}\0")
    (shut, _), (rel, _), (fifo_r, fifo_t), (zero_r, zero_t), (link_r, _) = replies
    assert shut == "SHUTDOWN: Permission denied (root or aveserver's account, UNIX socket only). ERROR\0"
    assert rel == "RELOAD: Permission denied (root or aveserver's account, UNIX socket only). ERROR\0"
    assert fifo_r == f"{fifo}: Not a regular file. ERROR\0" and fifo_t < 1.0
    assert zero_r == "/dev/zero: Not a regular file. ERROR\0" and zero_t < 1.0
    assert link_r.endswith("ERROR\0") and "symbolic links" in link_r
    # the daemon still runs, with the same workers, and scans (mail keeps flowing)
    assert root_server.proc.poll() is None
    assert sorted(children(root_server.proc.pid)) == workers
    assert talk(root_server, instream(EICAR)) == b"stream: EICAR-Test-File FOUND\0"
    log = root_server.log.read_text()
    assert "SHUTDOWN refused: client uid 33" in log and "RELOAD refused: client uid 33" in log
    assert "SIGHUP" not in log
    # over TCP nobody is trusted, not even root
    assert talk(root_server, b"zSHUTDOWN\0", tcp_port=port).startswith(b"SHUTDOWN: Permission denied")
    assert root_server.proc.poll() is None
    # root on the UNIX socket may
    assert talk(root_server, b"zRELOAD\0") == b"RELOADING\0"
    wait_for(lambda: "reload complete" in root_server.log.read_text(), what="reload")


def test_reloads_do_not_pile_up_workers(root_server: Server) -> None:
    """20 sessions that each RELOAD and stay open used to leave 21+ workers; now at most one
    retired generation lingers."""
    root_server.write_conf(**{"aveserver.options": {"User": "root", "Workers": "1"}})
    root_server.start()
    sessions = []
    try:
        for i in range(6):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(str(root_server.sock))
            s.sendall(b"zIDSESSION\0zRELOAD\0")
            assert s.recv(100) == b"1: RELOADING\0"
            sessions.append(s)
            wait_for(lambda n=i + 1: root_server.log.read_text().count("reload complete") >= n, what="reload")
        wait_for(lambda: len(children(root_server.proc.pid)) <= 2, timeout=30, what="retired workers to stop")
        assert talk(root_server, instream(EICAR)) == b"stream: EICAR-Test-File FOUND\0"
    finally:
        for s in sessions:
            s.close()
