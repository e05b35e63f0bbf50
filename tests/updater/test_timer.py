"""The hourly update every package installs (guide 5.1, 5.1.2's cron task): the systemd service and
timer of the .deb and the .rpm, the system crontab of the FreeBSD package, all staged by the one
stager (pkg/common/stage.py); each one's command line really updates (run here with the test
configuration).

FreeBSD's jot(1) does not exist here: the crontab line runs under this machine's /bin/sh with a
STAND-IN jot that checks its arguments and prints 0 (no wait). Everything else of the line is real.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.layout import FREEBSD, LINUX
from tests.support.updater import REPO, Mirror, write_conf

CONF = LINUX.conf_file
UNIT_DIRS = {"debian": "lib/systemd/system", "rpm": "usr/lib/systemd/system"}


def _unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def _stage(tmp_path: Path, layout: str) -> Path:
    dest = tmp_path / "pkg"
    subprocess.run([sys.executable, str(REPO / "pkg/common/stage.py"), str(REPO), str(dest), "--layout", layout,
                    "--units", str(REPO / "pkg/deb/debian/units")], check=True, capture_output=True)
    return dest


def _site(tmp_path: Path) -> tuple[Path, Path]:
    """A signed mirror and a configuration whose source is it; returns (conf, bases)."""
    mirror = Mirror(tmp_path / "mirror").build(daily=1)
    key = mirror.key.write_public(tmp_path / "test.key")
    bases = tmp_path / "bases"
    bases.mkdir()
    conf = write_conf(tmp_path / "k.conf", bases, {"path": {"BasesPublicKey": str(key)},
                                                   "updater.options": {"UseUpdateServerUrl": "yes",
                                                                       "UpdateServerUrl": str(mirror.root)}})
    return conf, bases


def _updated(tmp_path: Path, bases: Path) -> None:
    assert {"main.cvd", "daily.cvd"} <= set(os.listdir(bases))
    assert "databases updated from" in (tmp_path / "keepup2date.log").read_text()


@pytest.mark.parametrize("layout", ["debian", "rpm"])
def test_stage_ships_an_hourly_randomised_timer_whose_command_updates(tmp_path: Path, layout: str) -> None:
    dest = _stage(tmp_path, layout)
    units = dest / UNIT_DIRS[layout]
    timer = _unit(units / "kav4mailservers-keepup2date.timer")
    assert timer["Timer"]["OnCalendar"] == "hourly"
    assert timer["Timer"]["RandomizedDelaySec"]
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert "EXIT STATUS" in (dest / "usr/share/man/man8/keepup2date.8").read_text()
    if layout == "debian":
        assert "dh_installsystemd kav4mailservers-keepup2date.timer" in (REPO / "pkg/deb/debian/rules").read_text()
    else:  # packaged (an unlisted staged file fails rpmbuild) and enabled on the first installation
        spec = (REPO / "pkg/rpm/kav4mailservers.spec").read_text()
        assert "%global timer kav4mailservers-keepup2date.timer" in spec and "%{_unitdir}/%{timer}" in spec
        post = spec.split("\n%post\n")[1].split("\n%preun\n")[0]
        assert "systemctl enable --now %{timer}" in post and "%systemd_post %{units} %{timer}" in post
        assert "%systemd_preun %{units} %{timer}" in spec

    service = _unit(units / "kav4mailservers-keepup2date.service")
    assert service["Unit"]["ConditionPathExists"] == CONF
    argv = shlex.split(service["Service"]["ExecStart"])
    assert argv[0] == "/usr/sbin/keepup2date" and (dest / "usr/sbin/keepup2date").is_file()
    conf, bases = _site(tmp_path)
    argv = [sys.executable, "-m", "runtime.updater.cli", *[str(conf) if a == CONF else a for a in argv[1:]]]
    r = subprocess.run(argv, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # -q: only the report file speaks
    _updated(tmp_path, bases)


def test_freebsd_package_ships_the_same_job_as_a_system_crontab_that_updates(tmp_path: Path) -> None:
    dest = _stage(tmp_path, "freebsd")
    assert not (dest / "lib/systemd").exists() and not (dest / "usr/lib/systemd").exists()
    cron = dest / "usr/local/etc/cron.d/kav4mailservers-keepup2date"
    plist = (REPO / "pkg/freebsd/pkg-plist").read_text()
    assert "@config etc/cron.d/kav4mailservers-keepup2date\n" in plist  # pkg(8) keeps the admin's edits
    message = (REPO / "pkg/freebsd/files/pkg-message.in").read_text()
    assert "%%PREFIX%%/etc/cron.d/kav4mailservers-keepup2date" in message
    jobs = [ln for ln in cron.read_text().splitlines() if ln and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(jobs) == 1
    # crontab(5), system form: minute hour mday month wday who command; hourly at a random moment
    fields = jobs[0].split(None, 6)
    assert fields[:6] == ["0", "*", "*", "*", "*", "root"]
    command = fields[6]
    timer = _unit(REPO / "pkg/deb/debian/units/kav4mailservers-keepup2date.timer")
    delay = int(timer["Timer"]["RandomizedDelaySec"].removesuffix("min")) * 60
    assert f"sleep $(jot -r 1 0 {delay})" in command
    assert "%" not in command  # cron would turn it into a newline
    assert f"exec /usr/local/sbin/keepup2date -q -c {FREEBSD.conf_file}" in command
    assert (dest / "usr/local/sbin/keepup2date").is_file()

    # Run the line as cron does (SHELL=/bin/sh), with the test's configuration and this tree's updater.
    conf, bases = _site(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    jot = bin_dir / "jot"
    jot.write_text('#!/bin/sh\n[ "$1 $2 $3" = "-r 1 0" ] && [ "$4" -gt 0 ] || { echo "jot: $*" >&2; exit 64; }\n'
                   "echo 0\n")
    shim = bin_dir / "keepup2date"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec {shlex.quote(sys.executable)} '
                    '-m runtime.updater.cli "$@"\n')
    for f in (jot, shim):
        f.chmod(0o755)
    line = command.replace("/usr/local/sbin/keepup2date", str(shim)).replace(FREEBSD.conf_file, str(conf))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run(["/bin/sh", "-c", line], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # cron mails any output: -q keeps it to the report
    _updated(tmp_path, bases)

    # Before kavsetup has written the configuration: nothing runs, nothing is printed.
    report = (tmp_path / "keepup2date.log").read_text()
    absent = str(tmp_path / "absent.conf")
    missing = command.replace("/usr/local/sbin/keepup2date", str(shim)).replace(FREEBSD.conf_file, absent)
    r = subprocess.run(["/bin/sh", "-c", missing], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0 and r.stdout == "" and r.stderr == ""
    assert (tmp_path / "keepup2date.log").read_text() == report


def test_timer_units_pass_systemd_analyze_verify() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    units = [REPO / "pkg/deb/debian/units" / f"kav4mailservers-keepup2date.{kind}" for kind in ("service", "timer")]
    out = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, check=False)
    # the program and its man page are installed by the package, not on this machine; nothing else may be said
    ok = ("kav4mailservers-keepup2date.service: Command /usr/sbin/keepup2date is not executable",
          "kav4mailservers-keepup2date.service: Command 'man keepup2date(8)' failed",
          "kav4mailservers-keepup2date.timer: Command 'man keepup2date(8)' failed")
    bad = [ln for ln in out.stderr.splitlines() if ln.strip() and not ln.startswith(ok)]
    assert bad == [], out.stderr
