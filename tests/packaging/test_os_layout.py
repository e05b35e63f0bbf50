"""The OS layouts (runtime/layout.py, issue 17): one table, and everything that names a path agrees with it.

Linux keeps the paths the .deb and the rpm have always had (FHS: /etc/kav/5.5, /var/lib/kav/5.5 with
/var/db/kav linking to it); FreeBSD gets its own (hier(7) and the ports' conventions:
/usr/local/etc/kav/5.5, /var/db/kav/5.5). Checked here: the table itself, kavsetup telling the
layout of a tree it is pointed at, the configuration defaults rendered for each OS, the stager's
layouts, the FreeBSD port's Makefile (build.py refuses a port that disagrees) and the Webmin
module's per-OS configuration. The FreeBSD package's scripts running on these paths are in
test_freebsd_pkg.py.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from kavsetup.conffile import render_config
from kavsetup.detect.osinfo import layout_of
from kavsetup.detect.rootfs import RootFS
from kavsetup.integrate.files import Root
from kavsetup.integrate.journal import Journal
from runtime.config import schema
from runtime.layout import FREEBSD, HOST, LINUX, localize
from tests.support import fixture_roots

REPO = Path(__file__).resolve().parents[2]


def _module(name: str, path: Path):  # noqa: ANN202 - a script loaded as a module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_linux_keeps_its_paths_and_freebsd_has_its_own() -> None:
    assert (LINUX.etc, LINUX.conf_file, LINUX.answers) == (
        "/etc/kav/5.5/kav4mailservers", "/etc/kav/5.5/kav4mailservers/kav4mailservers.conf", "/etc/kav/5.5/setup.yaml")
    assert LINUX.state == "/var/lib/kav/5.5/kav4mailservers" and LINUX.journal == f"{LINUX.state}/journal"
    assert LINUX.db_link == ("/var/db/kav", "../lib/kav") and LINUX.sbin == "/usr/sbin"
    assert FREEBSD.etc == "/usr/local/etc/kav/5.5/kav4mailservers"
    assert FREEBSD.answers == "/usr/local/etc/kav/5.5/setup.yaml"
    assert FREEBSD.state == "/var/db/kav/5.5/kav4mailservers" and FREEBSD.journal == f"{FREEBSD.state}/journal"
    assert FREEBSD.db_link is None and FREEBSD.sbin == "/usr/local/sbin"
    # The daemons' defaults are the running system's.
    assert HOST is (FREEBSD if sys.platform.startswith("freebsd") else LINUX)
    assert schema.CONFIG_FILE == HOST.conf_file
    assert schema.DB_DIR == "/var/db/kav/5.5/kav4mailservers"


def test_localize_moves_only_the_configuration_directory() -> None:
    assert localize(f"{LINUX.etc}/publishers", FREEBSD) == f"{FREEBSD.etc}/publishers"
    assert localize(f"{FREEBSD.etc}/console.passwd", LINUX, FREEBSD) == f"{LINUX.etc}/console.passwd"
    assert localize("/var/db/kav/5.5/kav4mailservers/bases", FREEBSD) == "/var/db/kav/5.5/kav4mailservers/bases"
    assert localize("/etc/kavx/thing", FREEBSD) == "/etc/kavx/thing"  # a prefix of a name is not the directory
    assert localize("/etc/mail/sendmail.cf", FREEBSD) == "/etc/mail/sendmail.cf"


@pytest.mark.parametrize(("fixture", "want"), [("freebsd-14.1-postfix", FREEBSD), ("freebsd-14.1-exim", FREEBSD),
                                               ("freebsd-5.3-sendmail", FREEBSD), ("rocky-9-postfix-sendmail", LINUX),
                                               ("opensuse-leap-15.6-postfix", LINUX)])
def test_kavsetup_tells_the_layout_of_the_tree_it_works_on(tmp_path: Path, fixture: str, want: object) -> None:
    root = fixture_roots.build(fixture, tmp_path / "root")
    assert layout_of(RootFS(root)) is want
    assert str(Journal(Root(root)).path) == want.journal  # type: ignore[attr-defined]


def test_configuration_defaults_name_the_target_os_paths() -> None:
    bsd, linux = render_config(layout=FREEBSD), render_config(layout=LINUX)
    assert f"LicensePublishersPath={FREEBSD.etc}/publishers" in bsd
    assert f"PasswordFile={FREEBSD.etc}/console.passwd" in bsd
    assert "=/etc/kav/" not in bsd
    assert f"LicensePublishersPath={LINUX.etc}/publishers" in linux and "/usr/local/" not in linux
    assert render_config() == (bsd if HOST is FREEBSD else linux)  # the running system's by default
    # The state paths are the guide's on both (a link on Linux, the real directory on FreeBSD).
    for text in (bsd, linux):
        assert "BasesPath=/var/db/kav/5.5/kav4mailservers/bases" in text
    # The same through the command the port's do-install runs for kav4mailservers.conf.sample.
    r = subprocess.run([sys.executable, "-m", "kavsetup.cli", "config", "defaults", "--layout", "freebsd"],
                       capture_output=True, text=True, cwd=REPO, check=True)
    assert r.stdout == bsd


def test_the_stager_takes_each_package_format_s_directories_from_the_table() -> None:
    stage = _module("kav4ms_stage", REPO / "pkg/common/stage.py")
    for fmt in ("debian", "rpm"):
        lay = stage.LAYOUTS[fmt]
        assert (lay.prefix, lay.etc) == ("usr", "etc/kav/5.5/kav4mailservers")
        assert lay.state == "var/lib/kav/5.5/kav4mailservers"
        assert lay.links == (("var/db/kav", "../lib/kav"),)
    bsd = stage.LAYOUTS["freebsd"]
    assert (bsd.prefix, bsd.etc, bsd.state, bsd.links) == (
        "usr/local", "usr/local/etc/kav/5.5/kav4mailservers", "var/db/kav/5.5/kav4mailservers", ())


def test_the_port_must_agree_with_the_table(tmp_path: Path) -> None:
    build = _module("kav4ms_freebsd_build", REPO / "pkg/freebsd/build.py")
    v = build.make_vars()
    assert build.check_layout(v, "/usr/local/bin/python3.11") == []
    assert build.expand(v["KAVETC"], v, "python") == FREEBSD.etc
    wrong = dict(v, KAVETC="/etc/kav/5.5/kav4mailservers", KAVSTATE="/var/lib/kav/5.5/x")
    problems = build.check_layout(wrong, "/usr/local/bin/python3.11")
    assert len(problems) == 2 and "KAVETC=/etc/kav/5.5/kav4mailservers" in problems[0] and FREEBSD.etc in problems[0]


def test_webmin_module_names_each_os_configuration() -> None:
    webmin = REPO / "pkg/webmin/kav4mailservers"

    def config_file(name: str) -> str:
        lines = (webmin / name).read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)["config_file"]

    assert config_file("config-freebsd") == FREEBSD.conf_file
    assert config_file("config-debian-linux") == LINUX.conf_file


def _kavsetup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kavsetup.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_kavsetup_on_a_freebsd_tree_writes_and_finds_freebsd_paths(tmp_path: Path) -> None:
    """Without the package (kavsetup creates the directories itself and removes them again): install
    writes FreeBSD's paths, doctor finds the configuration there, uninstall finds the journal there
    and leaves the tree as it was."""
    from tests.support.freebsd import tree

    root = fixture_roots.build("freebsd-14.1-postfix", tmp_path / "root")
    before = tree(root)
    r = _kavsetup("install", "--root", str(root), "--non-interactive")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / FREEBSD.conf_file.lstrip("/")).is_file()
    assert (root / FREEBSD.journal.lstrip("/") / "journal.json").is_file()
    assert not (root / "etc/kav").exists() and not (root / "var/lib/kav").exists()
    r = _kavsetup("doctor", "--root", str(root), "--static")
    assert f"{FREEBSD.conf_file} is valid" in r.stdout, r.stdout + r.stderr
    r = _kavsetup("uninstall", "--root", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    after = tree(root)
    assert after == before, sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))[:20]
