"""kavsetup/services.py: the greeting probe that gates the MTA reload, and what a plan asks to start.

The init-system paths themselves (invoke-rc.d with the package's LSB script, before Postfix is
reloaded; stop after uninstall's requeue) run for real in the distro matrix's Postfix cell
(install, reconfigure, dialogue, remove); here the parts that need no init system.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from kavsetup import services
from kavsetup.integrate.edits import IniValues
from kavsetup.integrate.files import Root
from kavsetup.integrate.plan import standing_services


def _greeter(greeting: bytes) -> tuple[socket.socket, list[bytes]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    said: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(greeting)
                conn.settimeout(2)
                try:
                    said.append(conn.recv(64))
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return srv, said


def test_a_220_greeting_answers_and_the_session_is_closed_with_quit() -> None:
    srv, said = _greeter(b"220 localhost LMTP ready\r\n")
    with srv:
        ok, why = services.answers(f"inet:127.0.0.1:{srv.getsockname()[1]}", timeout=5)
        assert ok, why
        deadline = time.monotonic() + 5
        while not said and time.monotonic() < deadline:
            time.sleep(0.05)
        assert said == [b"QUIT\r\n"]


def test_a_refusing_greeting_is_not_ready() -> None:
    srv, _ = _greeter(b"421 4.3.0 cannot start\r\n")
    with srv:
        ok, why = services.answers(f"inet:127.0.0.1:{srv.getsockname()[1]}", timeout=0.5)
    assert not ok and "421" in why


def test_nothing_listening_times_out_naming_the_address(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        t = time.monotonic()
        ok, why = services.answers(f"inet:127.0.0.1:{port}", timeout=0.6)
        assert not ok and f"127.0.0.1:{port}" in why and time.monotonic() - t < 5
    ok, why = services.answers(f"unix:{tmp_path / 'none.sock'}", timeout=0.3)
    assert not ok and "none.sock" in why


def test_a_unix_listen_address_is_probed_too(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"220 ready\r\n")
            conn.recv(64)

    threading.Thread(target=serve, daemon=True).start()
    with srv:
        assert services.answers(f"unix:{path}", timeout=5)[0]


def test_an_image_under_root_starts_nothing_and_records_nothing(tmp_path: Path) -> None:
    record: list[dict] = []
    ok, notes = services.start(Root(str(tmp_path)), ((services.SMTPSCANNER, "inet:127.0.0.1:10025"),), record)
    assert ok and record == [] and "no init system" in notes[0] and "10025" in notes[0]
    assert services.release(Root(str(tmp_path)), [{"name": services.SMTPSCANNER, "init": "systemd"}]) == []


def test_the_plan_starts_smtpscanner_exactly_when_it_must_listen() -> None:
    conf = "/etc/kav/5.5/kav4mailservers/kav4mailservers.conf"

    def edits(listen: str) -> list:
        return [IniValues(conf, (("smtpscan.general", "Protocol", "lmtp"),
                                 ("smtpscan.general", "ListenAddress", listen)))]

    assert standing_services(edits("stdio")) == ()
    assert standing_services(edits("inet:127.0.0.1:10125")) == ((services.SMTPSCANNER, "inet:127.0.0.1:10125"),)
    assert standing_services(edits("unix:/run/kav4mailservers/q.sock"))[0][1] == "unix:/run/kav4mailservers/q.sock"
