"""The shipped systemd unit starts smtpscanner with arguments smtpscanner accepts.

The unit once said ``--foreground`` (aveserver's flag), which smtpscanner's parser rejects: in
Postfix's daemon form (the one form that runs smtpscanner as this service; spawn, Exim and Sendmail
start ``smtpscanner --stdio`` themselves) nothing listened and mail waited in the queue. Found by
bench.mta, the first thing that started the unit.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "pkg/deb/debian/units/kav4mailservers-smtpscanner.service"


def test_unit_exec_start_parses(tmp_path: Path) -> None:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.split("=", 1)[1])
    assert argv[0] == "/usr/sbin/smtpscanner"
    args = argv[1:]
    args[args.index("-c") + 1] = str(tmp_path / "missing.conf")  # stop right after argument parsing
    r = subprocess.run([sys.executable, "-m", "runtime.filter.main", *args], capture_output=True, text=True,
                       timeout=60)
    assert "unrecognized arguments" not in r.stderr and r.returncode != 2, r.stderr
    assert "missing.conf" in r.stderr  # it got as far as reading the configuration
    assert "--daemon" in args  # a service listens even when systemd hands it a pipe or socket as stdin
