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

    logs = tmp_path / "logs"
    result = soak(MESSAGES, "postfix", clients=20, seed=int(os.environ.get("SOAK_SEED", "1")), deb=deb,
                  log=lambda s: None, logs=logs)
    print(result.table)
    assert "| sent | 500 |" in result.table
    assert result.lost == 0, result.table + _post_mortem(logs)
    assert not result.problems, result.table + _post_mortem(logs)


def _post_mortem(logs: Path) -> str:
    """The chaos timeline and the end of the daemons' logs: the sandbox is gone after the run and
    a CI clone's tmp with it, so a failure carries what explains it."""
    parts = []
    for name in ("chaos.log", "aveserver.log", "smtpscanner.log"):
        f = logs / name
        if f.exists():
            lines = f.read_text(errors="replace").splitlines()
            parts.append(f"--- {name} (last 60 of {len(lines)} lines)\n" + "\n".join(lines[-60:]))
    mta = logs / "mta.log"
    if mta.exists():
        kav = [ln for ln in mta.read_text(errors="replace").splitlines()
               if "smtpscanner" in ln or "aveserver" in ln or "kav4mailservers" in ln]
        parts.append(f"--- mta.log, lines naming our daemons (last 40 of {len(kav)})\n" + "\n".join(kav[-40:]))
    return "\n\n" + "\n\n".join(parts)
