"""The 6.8 event-log format, levels, permissions and append/truncate."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.config import loads_config
from runtime.report import EventLog

LINE = re.compile(r"^\[(\d\d/\d\d/\d\d) (\d\d:\d\d:\d\d) ([FEWIAD])\] (.*)$")


def test_format_and_levels(tmp_path):
    path = tmp_path / "log" / "smtpscanner.log"
    log = EventLog(str(path), level=3)
    log.fatal("database failed")
    log.error("scan failed")
    log.warning("disk low")
    log.info("started")
    log.activity("not at level 3")
    log.debug("not at level 3")
    lines = path.read_text().splitlines()
    assert [LINE.match(line).group(3) for line in lines] == ["F", "E", "W", "I"]
    assert LINE.match(lines[3]).group(4) == "started"


def test_fatal_is_written_at_level_zero(tmp_path):
    path = tmp_path / "a.log"
    log = EventLog(str(path), level=0)
    log.error("hidden")
    log.fatal("shown")
    assert [LINE.match(x).group(4) for x in path.read_text().splitlines()] == ["shown"]


def test_permission_append_and_truncate(tmp_path):
    path = tmp_path / "a.log"
    old = os.umask(0o077)
    try:
        EventLog(str(path), permission=0o660).info("one")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    EventLog(str(path), append=True).info("two")
    assert len(path.read_text().splitlines()) == 2
    EventLog(str(path), append=False).info("three")
    assert [LINE.match(x).group(4) for x in path.read_text().splitlines()] == ["three"]


def test_locale_formats_from_config(tmp_path):
    cfg = loads_config(
        f"[locale]\nDateFormat=%Y-%m-%d\nTimeFormat=%I:%M:%S %p\n[aveserver.report]\n"
        f"ReportFileName={tmp_path}/ave.log\nReportLevel=10\nReportFilePermission=0600\n"
    )
    log = EventLog.from_config(cfg, "aveserver.report")
    log.debug("config loaded")
    line = (tmp_path / "ave.log").read_text()
    assert re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [AP]M D\] config loaded\n$", line)
    assert stat.S_IMODE((tmp_path / "ave.log").stat().st_mode) == 0o600


def test_crlf_from_mail_cannot_forge_log_lines(tmp_path):
    path = tmp_path / "a.log"
    EventLog(str(path)).activity('"msg" INFECTED EICAR\r\n[01/01/70 00:00:00 I] forged')
    assert len(path.read_text().splitlines()) == 1


def test_processes_share_one_log_without_torn_lines(tmp_path):
    path = tmp_path / "shared.log"
    code = (
        "import sys; from runtime.report import EventLog\n"
        f"log = EventLog({str(path)!r})\n"
        "for i in range(400): log.activity(sys.argv[1] * 200 + str(i))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, ch]) for ch in "abcd"]
    for p in procs:
        assert p.wait() == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 1600
    assert all(LINE.match(x) and len(set(LINE.match(x).group(4).rstrip("0123456789"))) == 1 for x in lines)


# -- issue 11 item 2: root opens logs in directories a less privileged account may write ---------
@pytest.mark.parametrize("append", [True, False])
def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path: Path, append: bool) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    log = tmp_path / "logdir" / "aveserver.log"
    log.parent.mkdir()
    log.symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        EventLog(str(log), append=append)
    assert victim.read_text() == "root:secret\n"


def test_a_dangling_symlink_creates_nothing(tmp_path: Path) -> None:
    log = tmp_path / "aveserver.log"
    log.symlink_to(tmp_path / "created-by-root")
    with pytest.raises(OSError, match="symbolic link"):
        EventLog(str(log))
    assert not (tmp_path / "created-by-root").exists()


def test_a_hard_link_or_a_fifo_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    os.link(victim, tmp_path / "hard.log")
    with pytest.raises(OSError, match="hard links"):
        EventLog(str(tmp_path / "hard.log"), append=False)
    assert victim.read_text() == "keep\n"
    os.mkfifo(tmp_path / "fifo.log")
    with pytest.raises(OSError, match="not a regular file|No such device"):  # ENXIO: no reader, no block
        EventLog(str(tmp_path / "fifo.log"))  # and does not block waiting for a reader


def test_append_no_still_truncates_a_regular_log(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("old run\n")
    EventLog(str(log), append=False).info("new run")
    assert "old run" not in log.read_text() and "new run" in log.read_text()
