"""``kavsetup demo`` (what ``make demo`` runs) passes on this machine and shows the EICAR family."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.filter import REPO


def test_kavsetup_demo_runs_and_keeps_its_promises(tmp_path) -> None:  # noqa: ANN001
    res = subprocess.run([sys.executable, "-m", "kavsetup.cli", "demo", "--dir", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=180, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {line.split()[0]: line for line in res.stdout.splitlines() if line.split() and line.split()[-1] == "ok"}
    assert set(rows) == {"clean", "EICAR", "CORR-", "SUSP-", "WARN-", "ERRO-", "CURE-", "DELE-"}
    assert "object cured" in rows["CURE-"] and "object removed" in rows["EICAR"]
    assert list((tmp_path / "demo" / "spool").iterdir()) == []
    assert list((tmp_path / "demo" / "quarantine").glob("*.kavq")), "5.2.4 quarantine in the demo config"
