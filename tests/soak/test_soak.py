"""The fault soak's reduced form (issue 19 item 1): 500 messages through the real Postfix cell while
the chaos loop kills aveserver workers and master, smtpscanner, the reinjection smtpd and fills
TempPath; nothing may be lost. The full 10 000 run is ``python -m bench.soak`` (docs/reliability.md).

Needs root and the distro matrix's host (namespaces, overlayfs, the cached bookworm-postfix root);
skips with the reason otherwise. The package is built from this tree by pkg/deb/build.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distro-matrix"))

pytestmark = [pytest.mark.root, pytest.mark.slow]

MESSAGES = 500


def _why_not() -> str | None:
    from distro_matrix.host import host_problem
    from distro_matrix.roots import is_cached
    from distro_matrix.spec import FLAVOURS, RootSpec

    problem = host_problem()
    if problem:
        return f"no distro-matrix host: {problem}"
    for tool in ("dpkg-buildpackage", "dh", "zip"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/setup-host.sh)"
    if not is_cached(RootSpec("bookworm", FLAVOURS["postfix"])) and os.environ.get("CI") != "true":
        return "bookworm-postfix root not cached (tests/distro-matrix/run.py --suite bookworm --mta postfix builds it)"
    return None


def test_soak_loses_nothing(tmp_path: Path) -> None:
    why = _why_not()
    if why:
        pytest.skip(why)
    env = {**os.environ, "KAV_DEB_DIST": str(tmp_path), "KAV_DEB_LINTIAN": "0"}
    r = subprocess.run(["bash", str(REPO / "pkg/deb/build.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"pkg/deb/build.sh failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    (deb,) = tmp_path.glob("kav4mailservers_*_all.deb")

    from bench.soak.run import soak

    result = soak(MESSAGES, "postfix", clients=20, seed=int(os.environ.get("SOAK_SEED", "1")), deb=deb,
                  log=lambda s: None)
    print(result.table)
    assert "| sent | 500 |" in result.table
    assert result.lost == 0, result.table
    assert not result.problems, result.table
