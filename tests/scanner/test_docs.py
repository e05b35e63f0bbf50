"""What ships beside the code: the man page covers every switch and guide line, the package stages
it and the commented cron example (5.3.2)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.scanner.cli import parser

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "docs" / "man" / "kavscanner.8"


def test_man_page_names_every_switch_and_each_guide_line() -> None:
    text = MAN.read_text()
    for action in parser()._actions:
        for opt in action.option_strings:
            assert opt.replace("-", "\\-") in text, f"{opt} missing from {MAN}"
    for line in ("\\-Rlq \\-okavscanner\\-`date +%F`.log \\-i3 \\-ePASBME \\-j3 \\-mCn /tmp",
                 "\\-pi/tmp/infected_archive.lst /", "\\-@/tmp/download.lst \\-ePASBME \\-rq \\-i0",
                 "\\-@ /tmp/downloads.lst \\-c scan_simple.conf", "\\-c /etc/kav/kavscanner.conf /home"):
        assert line in text
    for code in range(10):
        assert f"\n{code}\t" in text  # the exit status table


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff not installed")
def test_man_page_renders_without_warnings() -> None:
    r = subprocess.run(["groff", "-man", "-t", "-ww", "-z", str(MAN)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_package_stages_the_man_page_and_the_commented_cron_example(tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    subprocess.run([sys.executable, str(REPO / "pkg/deb/debian/stage.py"), str(REPO), str(dest)], check=True,
                   capture_output=True)
    assert (dest / "usr/share/man/man8/kavscanner.8").read_text() == MAN.read_text()
    cron = (dest / "usr/share/doc/kav4mailservers/examples/kavscanner.cron").read_text()
    active = [ln for ln in cron.splitlines() if ln.strip() and not ln.startswith("#")]
    assert active == []  # an example: nothing runs until the administrator enables it
    assert (dest / "usr/sbin/kavscanner").exists()
    assert (dest / "opt/kav/5.5/kav4mailservers/bin/kavscanner").is_symlink()
    vox = dest / "opt/kav/5.5/kav4mailservers/contrib/vox.sh"  # the path 5.3.3.1 prints
    assert vox.is_symlink() and str(vox.readlink()) == "/usr/lib/kav4mailservers/contrib/vox.sh"
    assert (dest / "usr/lib/kav4mailservers/contrib/vox.sh").stat().st_mode & 0o777 == 0o755
