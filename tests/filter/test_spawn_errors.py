"""A spawned smtpscanner with a broken kav4mailservers.conf (issue 11 item 8): the MTA gets
``421 4.3.0 <the error>`` as the greeting, and the error reaches syslog and the report file.

Real processes over a real socketpair (what Postfix ``spawn`` hands its child) and real pipes
(Exim's ``lmtp`` transport with ``command=``); syslog is a real datagram socket standing in for
/dev/log (KAV_SYSLOG_SOCKET), since this host has none and a test must not take over the real one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.filter import REPO


@pytest.fixture
def broken(make_stack, tmp_path: Path):  # noqa: ANN001, ANN201
    st = make_stack({"default": {}}, general={"Protocol": "lmtp"}, start=False)
    lines = st.conf.read_text().splitlines()
    lines += ["[smtpscan.limits]", "MaxCheckTime=soon"]
    st.conf.write_text("\n".join(lines) + "\n")
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(str(tmp_path / "log.sock"))
    syslog.settimeout(10)
    yield st, syslog, len(lines)
    syslog.close()


def _spawn(st, syslog: socket.socket, stdin, stdout) -> subprocess.Popen[bytes]:  # noqa: ANN001
    env = dict(os.environ, PYTHONPATH=str(REPO), KAV_SYSLOG_SOCKET=syslog.getsockname())
    return subprocess.Popen([sys.executable, "-m", "runtime.filter.main", "-c", str(st.conf)], stdin=stdin,
                            stdout=stdout, stderr=subprocess.DEVNULL, env=env)


def _check_logs(st, syslog: socket.socket, lineno: int) -> None:  # noqa: ANN001
    msg = syslog.recv(4096).decode()
    assert msg.startswith("<19>smtpscanner[")  # facility mail, severity err
    assert f"{st.conf}:{lineno}: [smtpscan.limits] MaxCheckTime" in msg
    report = st.log.read_text()
    assert " F] session refused: " in report and f"{st.conf}:{lineno}:" in report


def test_postfix_spawn_socket_gets_421_with_the_reason(broken) -> None:  # noqa: ANN001
    st, syslog, lineno = broken
    ours, theirs = socket.socketpair()
    proc = _spawn(st, syslog, theirs, theirs)
    theirs.close()
    ours.settimeout(30)
    data = b""
    while chunk := ours.recv(4096):
        data += chunk
    assert proc.wait(30) == 1
    assert data.startswith(f"421 4.3.0 {st.conf}:{lineno}: [smtpscan.limits] MaxCheckTime".encode())
    assert data.endswith(b"\r\n") and data.count(b"\r\n") == 1  # one line, then the connection closes
    _check_logs(st, syslog, lineno)


def test_exim_pipe_command_gets_421_with_the_reason(broken) -> None:  # noqa: ANN001
    st, syslog, lineno = broken
    proc = _spawn(st, syslog, subprocess.PIPE, subprocess.PIPE)
    out, _ = proc.communicate(b"LHLO mta\r\n", timeout=30)
    assert proc.returncode == 1
    assert out.startswith(b"421 4.3.0 ") and f"{st.conf}:{lineno}:".encode() in out
    _check_logs(st, syslog, lineno)
