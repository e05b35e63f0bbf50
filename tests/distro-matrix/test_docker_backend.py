"""Docker backend of the matrix (issue 7): the same package checks in debian, ubuntu, rockylinux and
opensuse containers, through pytest-docker, on machines that have a Docker engine.

These machines (and CI) have none, so every test here skips and says why; the chroot backend
(test_matrix.py) is the one that runs. The RPM images skip until pkg/rpm builds a package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.matrix, pytest.mark.slow]

HERE = Path(__file__).resolve().parent / "docker"
IMAGES = {"debian": "deb", "ubuntu": "deb", "rockylinux": "rpm", "opensuse": "rpm"}


def docker_problem() -> str | None:
    """Why the Docker backend cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker client installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no Docker engine reachable ({last}); the chroot backend (test_matrix.py) covers these machines"
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        return "the docker compose plugin is not installed"
    return None


def test_compose_files_exist_for_every_image() -> None:
    for name in IMAGES:
        text = (HERE / f"compose.{name}.yml").read_text()
        assert "services:" in text and "/dist:ro" in text


@pytest.fixture(scope="session")
def docker_engine() -> None:
    problem = docker_problem()
    if problem:
        pytest.skip(problem)


@pytest.mark.parametrize("distro", sorted(IMAGES))
def test_package_installs_and_uninstalls_to_the_byte(distro: str, docker_engine: None, deb: Path) -> None:
    if IMAGES[distro] == "rpm":
        pytest.skip("no RPM package yet (pkg/rpm holds the plan only)")
    from pytest_docker.plugin import get_docker_services

    os.environ["KAV_DIST"] = str(deb.parent)  # compose.*.yml mounts it at /dist

    with get_docker_services(
        "docker compose",
        str(HERE / f"compose.{distro}.yml"),
        f"kavmatrix-{distro}",
        ["up --build -d"],
        ["down -v"],
    ) as services:
        out = services._docker_compose.execute(
            "exec -T matrix sh /src/tests/distro-matrix/docker/scenario-deb.sh"
        )
        assert b"docker scenario: pass" in out
