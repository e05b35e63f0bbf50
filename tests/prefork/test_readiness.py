"""The readiness protocol as the daemons speak it (runtime/readiness.py, sd_notify(3)): what a
service manager listening on $NOTIFY_SOCKET receives.  The init scripts' use of it through
start-stop-daemon --notify-await is tested in tests/pkg/test_daemon_lifecycle.py."""

from __future__ import annotations

import errno
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import readiness
from runtime.prefork import AddressInUse, StartupError, while_in_use
from tests.support import notify


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = notify.manager(tmp_path / "notify", timeout=5)
    monkeypatch.setenv(readiness.ENV, str(tmp_path / "notify"))
    yield sock
    sock.close()


def _fields(sock: socket.socket) -> dict[str, str]:
    return notify.fields(sock.recv(4096))


def test_ready_names_the_main_pid_and_then_forgets_the_socket(manager: socket.socket) -> None:
    assert readiness.ready("SMTP on inet:127.0.0.1:10025")
    assert _fields(manager) == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "SMTP on inet:127.0.0.1:10025"}
    assert readiness.ENV not in os.environ  # workers and helpers started later never speak for it
    assert not readiness.ready()


@pytest.mark.parametrize(("exc", "code"), [
    (OSError(errno.EACCES, "Permission denied"), errno.EACCES),
    (AddressInUse("another server is listening on /var/run/aveserver"), errno.EADDRINUSE),
    (StartupError("aveserver is already running"), errno.EINVAL),
    ("[console] User 'x' does not exist", errno.EINVAL),
])
def test_failed_sends_an_errno_the_starter_reports(manager: socket.socket, exc: BaseException | str, code: int) -> None:
    assert readiness.failed(exc)
    got = _fields(manager)
    assert got["ERRNO"] == str(code) and got["STATUS"] == str(exc)
    assert readiness.ENV not in os.environ


def _refused_bind() -> StartupError:
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied")
        except OSError as exc:
            raise StartupError("cannot listen on inet:0.0.0.0:25: Permission denied") from exc
    except StartupError as wrapped:
        return wrapped


def test_a_startup_error_raised_from_an_os_error_reports_that_errno(manager: socket.socket) -> None:
    """smtpscanner wraps a refused bind in a one-line StartupError; the starter must still print
    the bind's reason ("Permission denied"), not "Invalid argument"."""
    assert readiness.failed(_refused_bind())
    assert _fields(manager)["ERRNO"] == str(errno.EACCES)


def test_only_the_explicit_cause_counts(manager: socket.socket) -> None:
    """An OSError merely being handled when a configuration error is raised (``__context__``) is
    not its reason."""
    try:
        try:
            raise FileNotFoundError(errno.ENOENT, "No such file")
        except OSError:
            raise StartupError("[smtpscan.general] ListenAddress: bad value") from None
    except StartupError as exc:
        assert readiness.failed(exc)
    assert _fields(manager)["ERRNO"] == str(errno.EINVAL)


def test_a_newline_in_a_reason_cannot_forge_a_field(manager: socket.socket) -> None:
    readiness.failed("bad value\nREADY=1")
    got = _fields(manager)
    assert "READY" not in got and got["ERRNO"] == str(errno.EINVAL)


def test_abstract_namespace_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"kav4ms-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv(readiness.ENV, "@" + name)
        assert readiness.ready()
        assert _fields(sock)["READY"] == "1"


def test_connected_before_a_drop_the_channel_is_used(manager: socket.socket, tmp_path: Path) -> None:
    readiness.connect()
    os.unlink(tmp_path / "notify")  # a send by name would fail now; the connected channel does not
    assert readiness.ready()
    assert _fields(manager)["READY"] == "1"


def test_without_a_manager_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(readiness.ENV, raising=False)
    assert not readiness.ready() and not readiness.failed("x")
    monkeypatch.setenv(readiness.ENV, "relative/path")  # not an address the protocol allows
    assert not readiness.ready()


def test_while_in_use_retries_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runtime.prefork.IN_USE_PAUSE", 0.0)
    calls: list[int] = []

    def busy_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise AddressInUse("in use")
        return "bound"

    assert while_in_use(busy_twice, "test", None) == "bound" and len(calls) == 3

    def always_busy() -> str:
        calls.append(1)
        raise AddressInUse("in use")

    calls.clear()
    with pytest.raises(AddressInUse):
        while_in_use(always_busy, "test", None)
    assert len(calls) == 5

    def other_failure() -> str:
        raise StartupError("not a socket")

    with pytest.raises(StartupError):
        while_in_use(other_failure, "test", None)
