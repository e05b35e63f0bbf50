"""Fixtures for the distro matrix (issue 7).

tests/distro-matrix/ has a dash (the issue's name), so it is not an importable package; pytest's
default import mode puts this directory on sys.path, which makes the library `distro_matrix` (a
real package beside this file) importable here and from run.py alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
REPO = HERE.parents[1]


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Our package, built from the working tree by the same script `make deb` runs."""
    for tool in ("dpkg-buildpackage", "dh"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install dpkg-dev debhelper)")
    out = tmp_path_factory.mktemp("deb")
    env = {**os.environ, "KAV_DEB_DIST": str(out), "KAV_DEB_LINTIAN": "0"}
    r = subprocess.run(["bash", str(REPO / "pkg/deb/build.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"pkg/deb/build.sh failed:\n{r.stdout}\n{r.stderr}"
    debs = sorted(out.glob("kav4mailservers_*_all.deb"))
    assert len(debs) == 1, f"expected one .deb in {out}, got {debs}"
    yield debs[0]
