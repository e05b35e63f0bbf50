"""``kavsetup detect --json`` on this very machine (Debian 12 with postfix installed, not
running).  The expected answers are read from independent sources at test time: os-release,
``dpkg-query``, the real ``postconf``; nothing is hard-coded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _os_release() -> dict[str, str]:
    fields = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        fields[key] = value.strip('"')
    return fields


needs_postfix = pytest.mark.skipif(shutil.which("postconf") is None or not Path("/etc/postfix/main.cf").exists(),
                                   reason="postfix is not installed on this machine")


@needs_postfix
def test_live_detect_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "kavsetup.cli", "detect", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    osr = _os_release()
    assert doc["os"]["id"] == osr["ID"]
    assert doc["os"]["version"] == osr.get("VERSION_ID", "")
    assert doc["os"]["family"] == "debian" and doc["os"]["pkg_format"] == "deb"
    assert doc["active"] == "postfix"
    postfix = next(m for m in doc["mtas"] if m["kind"] == "postfix")
    mail_version = subprocess.run(["postconf", "-dh", "mail_version"], capture_output=True,
                                  text=True, check=True).stdout.strip()
    assert postfix["version"] == mail_version
    assert postfix["version_source"] == "postconf" and postfix["details"]["postconf_ran"] is True
    config_dir = subprocess.run(["postconf", "-h", "config_directory"], capture_output=True,
                                text=True, check=True).stdout.strip()
    assert postfix["details"]["main_cf"] == f"{config_dir}/main.cf"
    daemon_dir = subprocess.run(["postconf", "-h", "daemon_directory"], capture_output=True,
                                text=True, check=True).stdout.strip()
    assert postfix["details"]["daemon_directory"] == daemon_dir
    dpkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "postfix"], capture_output=True,
                          text=True, check=True).stdout
    assert postfix["package"] == "postfix" and dpkg.startswith(mail_version)
    assert doc["users"]["mta_user"]["name"] == "postfix"
    assert doc["problems"] == [] or all("kluser" not in p["message"] for p in doc["problems"])


@needs_postfix
def test_live_text_report_exit_zero() -> None:
    proc = subprocess.run([sys.executable, "-m", "kavsetup.cli", "detect"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "postfix [active]" in proc.stdout and "Traceback" not in proc.stderr
