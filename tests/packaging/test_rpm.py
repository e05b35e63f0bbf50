"""The RPM (issue 17): `make rpm` builds, rpmlint has nothing to say, and the package is what the
spec promises. The scriptlets themselves run against real MTAs in the distro matrix's rpm columns
(tests/distro-matrix, distro_matrix/rpm_scenarios.py); here the built package is inspected."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild not installed (apt-get install rpm)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("rpm")
    env = {**os.environ, "KAV_RPM_DIST": str(out)}
    if shutil.which("rpmlint") is None:
        env["KAV_RPM_LINT"] = "0"
    r = subprocess.run(["bash", str(REPO / "pkg/rpm/build.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"pkg/rpm/build.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return next(out.glob("kav4mailservers-*.noarch.rpm")), r.stdout


def _q(rpm: Path, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, str(rpm)], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("rpmlint") is None, reason="rpmlint not installed")
def test_rpmlint_reports_no_errors_and_no_warnings(built: tuple[Path, str]) -> None:
    _, log = built
    assert "0 errors, 0 warnings" in log, log[-2000:]


def test_every_rpmlint_filter_is_explained_in_the_spec() -> None:
    comments = "\n".join(ln for ln in (REPO / "pkg/rpm/kav4mailservers.spec").read_text().splitlines()
                         if ln.startswith("#"))
    for line in (REPO / "pkg/rpm/kav4mailservers.rpmlintrc").read_text().splitlines():
        if line.startswith("addFilter"):
            tag = line.split('"')[1].split()[0]
            assert tag in comments, f"rpmlint filter {tag} is not explained in the spec's comments"


def test_layout_config_and_units(built: tuple[Path, str]) -> None:
    rpm, _ = built
    files = _q(rpm, "-l").split()
    for path in ("/usr/sbin/kavsetup", "/usr/lib/kav4mailservers/kavsetup/cli.py",
                 "/usr/lib/systemd/system/kav4mailservers-aveserver.service",
                 "/usr/lib/sysusers.d/kav4mailservers.conf", "/usr/lib/tmpfiles.d/kav4mailservers.conf",
                 "/opt/kav/5.5/kav4mailservers/bin/smtpscanner", "/var/db/kav"):
        assert path in files, path
    assert _q(rpm, "-c").split() == ["/etc/kav/5.5/kav4mailservers/kav4mailservers.conf"]
    flags = _q(rpm, "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMODES:perms}\n]")
    assert "/etc/kav/5.5/kav4mailservers/kav4mailservers.conf cn root:filter -rw-r-----" in flags
    # the state tree (kavsetup's journal) is root's; only the quarantine and licensing are the filter's
    assert "/var/lib/kav/5.5/kav4mailservers  root:filter drwxr-x---" in flags
    assert "/var/lib/kav/5.5/kav4mailservers/quarantine  kluser:filter drwxr-x---" in flags
    links = _q(rpm, "--qf", "[%{FILENAMES} -> %{FILELINKTOS}\n]")
    assert "/opt/kav/5.5/kav4mailservers/bin/kavsetup -> ../../../../../usr/sbin/kavsetup" in links


def test_scriptlets_act_on_rpms_argument(built: tuple[Path, str]) -> None:
    rpm, _ = built
    scripts = _q(rpm, "--scripts")
    post = scripts.split("postinstall scriptlet")[1].split("scriptlet")[0]
    assert 'if [ "$1" -eq 1 ]; then' in post and "kavsetup \"$@\"" in post and "--answers" in post
    preun = scripts.split("preuninstall scriptlet")[1].split("scriptlet")[0]
    assert 'if [ "$1" -eq 0 ]; then' in preun and "kavsetup uninstall" in preun
    postun = scripts.split("postuninstall scriptlet")[1]
    assert "try-restart kav4mailservers-aveserver.service kav4mailservers-smtpscanner.service" in postun


def test_sysusers_file_declares_the_guides_account(built: tuple[Path, str], tmp_path: Path) -> None:
    rpm, _ = built
    cpio = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=cpio, cwd=tmp_path, check=True)
    lines = [ln.split() for ln in (tmp_path / "usr/lib/sysusers.d/kav4mailservers.conf").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert ["g", "filter", "-"] in lines
    assert lines[1][:3] == ["u", "kluser", "-:filter"] and lines[1][-2:] == ["/var/spool/filter", "/sbin/nologin"]
    # The wrappers run the packaged modules (python3 compiles them; the shebang is the distribution's).
    wrapper = (tmp_path / "usr/sbin/kavsetup").read_text()
    assert wrapper.startswith("#!/usr/bin/python3\n") and '"/usr/lib/kav4mailservers"' in wrapper
    r = subprocess.run([sys.executable, "-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())",
                        str(tmp_path / "usr/sbin/kavsetup")])
    assert r.returncode == 0
