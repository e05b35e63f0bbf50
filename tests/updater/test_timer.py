"""The hourly timer the package installs (guide 5.1, 5.1.2): staged by debian/stage.py, and its
service's command line really updates (run here with the test configuration)."""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
import sys
from pathlib import Path

from tests.support.updater import REPO, Mirror, write_conf


def _unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def test_stage_ships_an_hourly_randomised_timer_whose_command_updates(tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    subprocess.run([sys.executable, str(REPO / "pkg/common/stage.py"), str(REPO), str(dest), "--layout", "debian",
                    "--units", str(REPO / "pkg/deb/debian/units")], check=True, capture_output=True)
    units = dest / "lib/systemd/system"
    timer = _unit(units / "kav4mailservers-keepup2date.timer")
    assert timer["Timer"]["OnCalendar"] == "hourly"
    assert timer["Timer"]["RandomizedDelaySec"]
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert "EXIT STATUS" in (dest / "usr/share/man/man8/keepup2date.8").read_text()
    rules = (REPO / "pkg/deb/debian/rules").read_text()
    assert "dh_installsystemd kav4mailservers-keepup2date.timer" in rules

    argv = shlex.split(_unit(units / "kav4mailservers-keepup2date.service")["Service"]["ExecStart"])
    assert argv[0] == "/usr/sbin/keepup2date" and (dest / "usr/sbin/keepup2date").is_file()
    mirror = Mirror(tmp_path / "mirror").build(daily=1)
    key = mirror.key.write_public(tmp_path / "test.key")
    bases = tmp_path / "bases"
    bases.mkdir()
    conf = write_conf(tmp_path / "k.conf", bases, {"path": {"BasesPublicKey": str(key)},
                                                   "updater.options": {"UseUpdateServerUrl": "yes",
                                                                       "UpdateServerUrl": str(mirror.root)}})
    argv = [sys.executable, "-m", "runtime.updater.cli",
            *[str(conf) if a.endswith("kav4mailservers.conf") else a for a in argv[1:]]]
    r = subprocess.run(argv, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # -q: only the report file speaks
    assert {"main.cvd", "daily.cvd"} <= set(os.listdir(bases))
    assert "databases updated from" in (tmp_path / "keepup2date.log").read_text()
