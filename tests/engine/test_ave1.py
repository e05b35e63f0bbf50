"""AVE/1 lines (runtime/engine/ave1.py): what the clients build, aveserver parses, and back."""

from __future__ import annotations

import pytest

from runtime.engine import ave1


def test_requests_round_trip() -> None:
    req = ave1.parse_request(ave1.scan_data(12, "mail box/ä.zip", cure=True, all_objects=True).decode().rstrip("\n"))
    assert (req.verb, req.size, req.name, req.cure, req.all_objects) == ("SCANDATA", 12, "mail box/ä.zip", True, True)
    req = ave1.parse_request(ave1.scan_file("/var/tmp/a b").decode().rstrip("\n"))
    assert (req.verb, req.name, req.flags, req.cure) == ("SCANFILE", "/var/tmp/a b", "-", False)
    assert ave1.parse_request(ave1.PING.decode().rstrip("\n")).verb == "PING"
    assert ave1.parse_request("AVE/1 quit\r").verb == "QUIT"


def test_bad_requests_say_whether_the_stream_is_still_usable() -> None:
    with pytest.raises(ave1.BadRequest) as exc:
        ave1.parse_request("HELLO there")
    assert exc.value.close
    with pytest.raises(ave1.BadRequest) as exc:
        ave1.parse_request("AVE/1 SCANDATA - many x")
    assert not exc.value.close and "SCANDATA" in str(exc.value)


def test_result_and_error_replies() -> None:
    raw = ave1.result(b'{"status":"CLEAN"}', b"cured!")
    line, _, rest = raw.partition(b"\n")
    head = ave1.parse_result(line.decode())
    assert (head.doc_len, head.cured_len) == (18, 6) and rest == b'{"status":"CLEAN"}cured!'
    assert ave1.parse_result(ave1.result(b"{}", None).decode().split("\n")[0]).cured_len is None
    with pytest.raises(ave1.AveServerError) as err:
        ave1.parse_result(ave1.error(413, "too big").decode().rstrip("\n"))
    assert err.value.code == 413
    for garbled in ("AVE/1 200 RESULT x -", "AVE/1 200 PONG", "SMTP 200 RESULT 1 -", "AVE/1 200 RESULT 1 many"):
        with pytest.raises(ave1.AveServerUnavailable):
            ave1.parse_result(garbled)
    assert ave1.parse_version(ave1.version_reply({"records": 3}).decode().rstrip("\n")) == {"records": 3}
    assert ave1.is_pong(ave1.PONG.decode().rstrip("\n"))
