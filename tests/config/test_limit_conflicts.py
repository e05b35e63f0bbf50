"""``kavsetup config check`` reports limit combinations that cannot work (issue 11 item 9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runtime.config import loads_config


def _warnings(text: str) -> list[str]:
    return [str(w) for w in loads_config(text, "k.conf").warnings]


def test_defaults_are_consistent() -> None:
    assert _warnings("") == []


def test_unlimited_message_size_is_reported_on_its_line() -> None:
    (w,) = _warnings("[smtpscan.limits]\nMaxMessageSize=0\n")
    assert w.startswith("k.conf:2: [smtpscan.limits] MaxMessageSize: no limit lets in messages larger than "
                        "[aveserver.options] StreamMaxLength (104857600)")


def test_message_size_above_stream_max_length() -> None:
    (w,) = _warnings("[aveserver.options]\nStreamMaxLength=1000000\n")  # the default 50 MiB is now above it
    assert w.startswith("k.conf:2: [smtpscan.limits] MaxMessageSize: 52428800 bytes lets in messages larger")


def test_check_time_shorter_than_scan_time() -> None:
    (w,) = _warnings("[smtpscan.limits]\nMaxCheckTime=10\n[aveserver.limits]\nMaxScanTime=30\n")
    assert "MaxCheckTime: 10s is shorter than [aveserver.limits] MaxScanTime (30s)" in w


def test_config_check_prints_them(tmp_path: Path) -> None:
    conf = tmp_path / "kav4mailservers.conf"
    conf.write_text("[smtpscan.limits]\nMaxMessageSize=0\n")
    out = subprocess.run([sys.executable, "-m", "kavsetup.cli", "config", "check", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert f"{conf}:2: [smtpscan.limits] MaxMessageSize: no limit" in out.stderr and "(warning)" in out.stderr
