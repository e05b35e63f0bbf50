"""tests/support/debian_pkgs.install_into leaves a root whose dpkg database dpkg itself reads
(the integration tests rely on it too)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.debian_pkgs import control, extract, install_into


def test_install_into_is_read_by_dpkg(tmp_path: Path) -> None:
    fields = install_into(tmp_path, "postfix")
    assert fields == control("postfix")
    version = subprocess.run(["dpkg-query", f"--admindir={tmp_path}/var/lib/dpkg", "-W", "-f",
                              "${Version} ${Status}", "postfix"], capture_output=True, text=True, check=True)
    assert version.stdout == f"{fields['Version']} install ok installed"
    owner = subprocess.run(["dpkg-query", f"--admindir={tmp_path}/var/lib/dpkg", "-S", "/usr/sbin/postconf"],
                           capture_output=True, text=True, check=True)
    assert owner.stdout.startswith("postfix:")
    assert (tmp_path / "usr/sbin/postconf").read_bytes() == (extract("postfix") / "usr/sbin/postconf").read_bytes()
