"""aveserver's honest identity (issue 11 item 14): VERSION names this project; an empty database
is a warning at start and has no date (a made-up one would claim current bases)."""

from __future__ import annotations

import socket

from runtime.engine import ave1
from tests.support.engine import Server, talk


def _ave_version(server: Server) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(server.sock))
        s.sendall(ave1.VERSION)
        line = s.makefile("rb").readline().decode()
    return ave1.parse_version(line)


def test_empty_database_warns_and_has_no_date(server: Server) -> None:
    for f in server.bases.iterdir():
        f.unlink()
    server.start()
    assert talk(server, b"zVERSION\0") == b"aveserver 5.5.0/0/\0"
    doc = _ave_version(server)
    assert doc["product"] == "kav4mailservers aveserver" and doc["date"] == "" and doc["records"] == 0
    assert " W] the anti-virus database in " in server.log.read_text()


def test_version_names_this_project(server: Server) -> None:
    server.start()
    doc = _ave_version(server)
    assert doc["product"] == "kav4mailservers aveserver" and doc["records"] == 1 and doc["date"]
    assert "Kaspersky" not in talk(server, b"zVERSIONCOMMANDS\0").decode()
