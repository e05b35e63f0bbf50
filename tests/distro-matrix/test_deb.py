"""The package itself: built by pkg/deb/build.sh, lintian without errors, FHS layout, sane scripts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _contents(deb: Path) -> dict[str, str]:
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in out.splitlines():
        perms, _owner, _size, _date, _time, name, *rest = line.split(None, 6) + [""]
        entries[name.removeprefix(".")] = perms + (" " + rest[0] if rest and rest[0] else "")
    return entries


def test_lintian_has_no_errors(deb: Path) -> None:
    if shutil.which("lintian") is None:
        pytest.skip("lintian not installed")
    r = subprocess.run(["lintian", "--fail-on", "error", str(deb)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [line for line in r.stdout.splitlines() if line.startswith("E:")]


def test_layout_is_fhs_with_the_guides_names_as_links(deb: Path) -> None:
    files = _contents(deb)
    assert "/usr/sbin/kavsetup" in files
    assert "/usr/lib/kav4mailservers/kavsetup/cli.py" in files
    assert not [f for f in files if "/dist-packages/" in f or f.endswith(".pyc")]
    opt = {f: v for f, v in files.items() if f.startswith("/opt/") and not f.endswith("/")}
    # Only links under /opt: commands to /usr/sbin, the guide's contrib/vox.sh (5.3.3.1) to the library.
    assert opt and all(v.startswith("l") for v in opt.values()), opt
    assert all(("-> /usr/sbin/" in v) if "/bin/" in f else ("-> /usr/lib/kav4mailservers/contrib/" in v)
               for f, v in opt.items()), opt
    for d in ("etc", "var/lib", "var/log"):
        assert f"/{d}/kav/5.5/kav4mailservers/" in files
    # Every command wrapper has its man page and its guide-path link.
    for cmd in [f.rsplit("/", 1)[1] for f in files if f.startswith("/usr/sbin/") and not f.endswith("/")]:
        assert f"/usr/share/man/man8/{cmd}.8.gz" in files
        assert f"/opt/kav/5.5/kav4mailservers/bin/{cmd}" in files


def test_control_depends_only_on_debian_packages(deb: Path) -> None:
    depends = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True
    ).stdout
    names = {d.strip().split()[0] for d in depends.split(",")}
    assert {"python3", "python3-aiosmtpd", "python3-jinja2", "adduser"} <= names


def test_maintainer_scripts_parse(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path)], check=True)
    for script in ("postinst", "prerm", "postrm", "config"):
        path = tmp_path / script
        assert path.exists(), script
        r = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, f"{script}: {r.stderr}"
