#!/usr/bin/python3
"""Lay the product out in a package build directory: one stager for the .deb, the .rpm and the FreeBSD package.

Called by debian/rules (through pkg/deb/debian/stage.py), by the rpm spec's %install and by
pkg/freebsd/build.py, each naming its layout (`--layout debian|rpm|freebsd`). The layouts differ
only in where things go (unit directory, /usr/local on FreeBSD, the interpreter path); what is
shipped is derived once, here, so the three packages cannot disagree about the commands.

Why a script rather than debian/install lines: the set of commands depends on what the working tree
contains (pyproject.toml's [project.scripts] whose module exists), and each command needs a wrapper,
a man page, the guide's /opt name and, for the two daemons, a unit file. Deriving all of those from
one list keeps them from disagreeing.

Layout (docs/packaging.md):
  /usr/lib/kav4mailservers/{kavsetup,runtime}/   the Python packages (private: "runtime" is too
                                                 generic a name for dist-packages)
  /usr/sbin/<command>                            wrappers for [project.scripts]
  /opt/kav/5.5/kav4mailservers/bin/<command>     links: the paths the guide prints (4.2, 4.4, 5.1.2)
  /lib/systemd/system/kav4mailservers-*.service  aveserver and smtpscanner, when their commands exist
  /etc/kav/5.5/kav4mailservers/                  configuration (written by kavsetup, not a conffile)
  /var/lib/kav/5.5/kav4mailservers/              state (bases, quarantine, journal); /var/db/kav
                                                 links to /var/lib/kav for the guide's paths
  /var/log/kav/5.5/kav4mailservers/              reports
"""

from __future__ import annotations

import argparse
import configparser
import os
import shutil
import sys
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

# The OS layouts (runtime/layout.py) come from the tree being staged: this script runs as
# pkg/common/stage.py, as debian/stage.py (build.sh's copy) and as stage.py at the rpm source root.
_HERE = Path(__file__).resolve().parent
for _top in (_HERE, _HERE.parent, _HERE.parents[1]):  # the nearest tree that has one
    if (_top / "runtime" / "layout.py").is_file():
        sys.path.insert(0, str(_top))
        break
from runtime.layout import FREEBSD, GUIDE_BIN, GUIDE_PREFIX, LINUX, OSLayout, localize  # noqa: E402

PACKAGES = ("kavsetup", "runtime")


@dataclass(frozen=True)
class Layout:
    """Where one package format puts things (paths relative to the staging root). The directories
    are the OS's (runtime/layout.py, shared with kavsetup and the runtime's defaults); what differs
    between formats of one OS is the unit directory, the interpreter and the link style."""

    name: str
    os: OSLayout
    unit_dir: str | None  # systemd units; None where the OS has rc.d scripts instead (shipped by the port)
    python: str  # the interpreter the wrappers name
    generator: str  # named in the wrappers' comment
    #: the /opt links: absolute as Debian policy wants across top-level directories, relative as
    #: Fedora's rpmlint (symlink-should-be-relative) wants
    relative_links: bool = False
    #: where the periodic jobs (TIMERS) go as a system crontab on an OS without systemd timers
    cron_dir: str | None = None

    @property
    def prefix(self) -> str:  # "usr" or "usr/local"
        return self.os.prefix.lstrip("/")

    @property
    def etc(self) -> str:
        return self.os.etc.lstrip("/")

    @property
    def state(self) -> str:
        """The state tree, where kavsetup's journal, the bases and the quarantine live."""
        return self.os.state.lstrip("/")

    @property
    def links(self) -> tuple[tuple[str, str], ...]:
        """(link, target): the guide's /var/db/kav kept working where the state tree is elsewhere."""
        return ((self.os.db_link[0].lstrip("/"), self.os.db_link[1]),) if self.os.db_link else ()

    @property
    def libdir(self) -> str:
        return f"{self.prefix}/lib/kav4mailservers"

    @property
    def man8(self) -> str:
        return f"{self.prefix}/share/man/man8"


LAYOUTS: dict[str, Layout] = {
    # Debian: units in /lib/systemd/system (bookworm's debhelper), FHS state under /var/lib.
    "debian": Layout("debian", LINUX, "lib/systemd/system", "/usr/bin/python3", "debian/stage.py"),
    # RHEL/Fedora: %{_unitdir} is /usr/lib/systemd/system; otherwise as Debian.
    "rpm": Layout("rpm", LINUX, "usr/lib/systemd/system", "/usr/bin/python3", "pkg/common/stage.py",
                  relative_links=True),
    # FreeBSD ports: programs, man pages, rc.d and the configuration under /usr/local, python from
    # ports, state in /var/db (hier(7); the guide's own path), see docs/packaging.md.
    # cron(8) reads the packages' system crontabs from /usr/local/etc/cron.d (the timers' counterpart).
    "freebsd": Layout("freebsd", FREEBSD, None, "/usr/local/bin/python3", "pkg/common/stage.py",
                      cron_dir="usr/local/etc/cron.d"),
}

#: What each command is, for its man page's NAME line and the guide section it implements.
ABOUT: dict[str, tuple[str, str]] = {
    "kavsetup": ("install, integrate and uninstall kav4mailservers", "3.4, 4.4, 7"),
    "aveserver": ("the anti-virus scanning daemon", "2.1, 6.4"),
    "smtpscanner": ("the mail content filter between the MTA and aveserver", "2.1, 4.4.5, 6.1"),
    "kavscanner": ("on-demand file system scanner", "5.3, 6.2"),
    "keepup2date": ("anti-virus database updater", "5.1"),
    "licensemanager": ("product key manager", "5.4"),
}

#: Daemons with a unit, keyed by the command that must exist for the unit to be shipped.
UNITS = {"aveserver": "kav4mailservers-aveserver.service", "smtpscanner": "kav4mailservers-smtpscanner.service",
         "kavconsole": "kav4mailservers-console.service"}
#: Periodic jobs: the command, then its oneshot service and the timer that runs it (guide 5.1.2's cron task).
#: Where the OS has no systemd, the same pair becomes a system crontab (cron_file): one source of the command line.
TIMERS = {"keepup2date": ("kav4mailservers-keepup2date.service", "kav4mailservers-keepup2date.timer")}
#: OnCalendar= values the crontab translation knows, as crontab(5) minute..weekday fields.
CALENDAR = {"hourly": "0 * * * *", "daily": "0 0 * * *"}

CRONTAB = """# {name}: generated by {generator} from {service} and {timer}.
#
# {description}:
# the Linux packages' systemd timer, as a system crontab for cron(8).
# Nothing runs until kavsetup has written {condition}; the job waits a random
# 0-{delay} s (jot(1)) first, so that a fleet installed at once does not hit one mirror in the same second.
# To stop it, put "#" before the schedule line: this file is a configuration file of the package
# (@config), pkg(8) keeps your change on upgrade.
SHELL=/bin/sh
PATH=/etc:/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin:/usr/local/sbin
#minute\thour\tmday\tmonth\twday\twho\tcommand
{when}\troot\t[ -f {condition} ] && sleep $(jot -r 1 0 {delay}) && exec {command}
"""

WRAPPER = """#!{python}
# {name}: kav4mailservers command (generated by {generator}).
import sys

# The package compiles its modules in postinst; never leave stray caches that dpkg does not know.
sys.dont_write_bytecode = True
sys.path.insert(0, "/{libdir}")
from {module} import {func}  # noqa: E402

sys.exit({func}())
"""

MANPAGE = """.TH {upper} 8 "2026-11-24" "kav4mailservers 5.5" "System Administration"
.SH NAME
{name} \\- {about}
.SH SYNOPSIS
.B {name}
.RI [ options ]
.SH DESCRIPTION
.B {name}
is part of kav4mailservers, a clean-room re-creation of Kaspersky Anti-Virus 5.5
for Linux Mail Servers. It implements sections {sections} of the administrator's guide.
Run
.B {name} \\-\\-help
for the options this build supports.
.SH FILES
.TP
.I {conf}
the configuration file
.TP
.I /opt/kav/5.5/kav4mailservers/bin/{name}
the path the guide uses, a link to this command
.SH SEE ALSO
.BR kavsetup (8),
/usr/share/doc/kav4mailservers/
"""


def _copy_tree(src: Path, dst: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.endswith(".egg-info"))
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(dst / rel, 0o755)  # noqa: S103 - package directories are world-readable
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            target = dst / rel / name
            shutil.copyfile(Path(dirpath) / name, target)
            os.chmod(target, 0o644)


def _unit(path: Path) -> configparser.ConfigParser:
    """A systemd unit's [Section] Key=value pairs (the subset the crontab translation reads)."""
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text(), source=str(path))
    return cp


def _seconds(span: str) -> int:
    """A systemd time span of the forms the timers use ("50min", "30s", "1h", "90")."""
    units = {"h": 3600, "min": 60, "m": 60, "s": 1, "": 1}
    number = span.rstrip("abcdefghijklmnopqrstuvwxyz")
    return int(number) * units[span[len(number):]]


def cron_file(service: Path, timer: Path, layout: Layout, name: str) -> str:
    """The system crontab doing what the service+timer pair does, with the layout's command paths.

    Derived rather than written beside the units so the schedule, the delay and the command line
    cannot drift between the Linux packages and the FreeBSD one.
    """
    svc, tim = _unit(service), _unit(timer)
    words = svc["Service"]["ExecStart"].split()
    if not words[0].startswith(f"{LINUX.sbin}/"):
        raise SystemExit(f"stage.py: {service}: ExecStart must name {LINUX.sbin}/<command>: {words[0]}")
    # the units are written for Linux: the program and the configuration as the layout's OS has them
    words[0] = f"{layout.os.sbin}/{words[0][len(LINUX.sbin) + 1:]}"
    command = " ".join(localize(w, layout.os, LINUX) for w in words)
    condition = localize(svc["Unit"].get("ConditionPathExists", "/"), layout.os, LINUX)
    calendar = tim["Timer"]["OnCalendar"]
    if calendar not in CALENDAR:
        raise SystemExit(f"stage.py: {timer}: OnCalendar={calendar} has no crontab translation here")
    return CRONTAB.format(name=name, generator=layout.generator, service=service.name, timer=timer.name,
                          description=tim["Unit"].get("Description", service.stem), condition=condition,
                          delay=_seconds(tim["Timer"].get("RandomizedDelaySec", "0")), when=CALENDAR[calendar],
                          command=command)


def commands(src: Path) -> dict[str, str]:
    """[project.scripts] entries whose module is present in the tree: name -> 'module:func'."""
    scripts = tomllib.loads((src / "pyproject.toml").read_text())["project"].get("scripts", {})
    present = {}
    for name, target in sorted(scripts.items()):
        module = target.split(":")[0]
        base = src / module.replace(".", "/")
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            present[name] = target
    return present


def stage(src_dir: str | Path, dest_dir: str | Path, layout: Layout = LAYOUTS["debian"],
          units_src: Path | None = None) -> dict[str, str]:
    """Stage the tree at src_dir into dest_dir; returns the commands shipped (name -> 'module:func')."""
    src, dest = Path(src_dir), Path(dest_dir)
    for pkg in PACKAGES:
        _copy_tree(src / pkg, dest / layout.libdir / pkg)

    cmds = commands(src)
    sbin = dest / layout.prefix / "sbin"
    man8 = dest / layout.man8
    guide_bin = dest / GUIDE_BIN.lstrip("/")
    for d in (sbin, man8, guide_bin):
        d.mkdir(parents=True, exist_ok=True)
    for name, target in cmds.items():
        module, func = target.split(":")
        wrapper = sbin / name
        wrapper.write_text(WRAPPER.format(name=name, module=module, func=func, python=layout.python,
                                          generator=layout.generator, libdir=layout.libdir))
        wrapper.chmod(0o755)
        about, sections = ABOUT.get(name, ("kav4mailservers command", "1-9"))
        written = src / "docs" / "man" / f"{name}.8"  # a full page where one is written (kavscanner)
        (man8 / f"{name}.8").write_text(
            written.read_text() if written.is_file()
            else MANPAGE.format(name=name, upper=name.upper(), about=about, sections=sections,
                                conf=layout.os.conf_file)
        )
        target = f"/{layout.prefix}/sbin/{name}"
        if layout.relative_links:
            target = os.path.relpath(target, GUIDE_BIN)
        (guide_bin / name).symlink_to(target)

    # contrib/vox.sh (5.3.3.1) under the library, and at the guide's /opt path as a link.
    contrib = dest / layout.libdir / "contrib"
    contrib.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "pkg" / "common" / "vox.sh", contrib / "vox.sh")
    os.chmod(contrib / "vox.sh", 0o755)  # noqa: S103 - a script run by root and by admins
    guide_contrib = dest / GUIDE_PREFIX.lstrip("/") / "contrib"
    guide_contrib.mkdir(parents=True, exist_ok=True)
    vox = f"/{layout.libdir}/contrib/vox.sh"
    (guide_contrib / "vox.sh").symlink_to(os.path.relpath(vox, "/" + str(guide_contrib.relative_to(dest)))
                                          if layout.relative_links else vox)

    # Examples the guide describes, installed commented out (5.3.2: the kavscanner cron schedule).
    examples = dest / layout.prefix / "share/doc/kav4mailservers/examples"
    for example in sorted((src / "pkg" / "common").glob("*.cron")):
        examples.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(example, examples / example.name)
        os.chmod(examples / example.name, 0o644)

    units_src = units_src or Path(__file__).resolve().parents[1] / "deb/debian/units"
    if layout.unit_dir:
        unit_dir = dest / layout.unit_dir
        for command, unit in UNITS.items():
            if command in cmds:
                unit_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(units_src / unit, unit_dir / unit)
                os.chmod(unit_dir / unit, 0o644)
        # the .deb's rules and the rpm's %post enable the timer
        for command, pair in TIMERS.items():
            for unit in pair if command in cmds else ():
                unit_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(units_src / unit, unit_dir / unit)
                os.chmod(unit_dir / unit, 0o644)
    if layout.cron_dir:
        for command, (service, timer) in TIMERS.items():
            if command in cmds:
                cron = dest / layout.cron_dir / service.removesuffix(".service")
                cron.parent.mkdir(parents=True, exist_ok=True)
                cron.write_text(cron_file(units_src / service, units_src / timer, layout, cron.name))
                os.chmod(cron, 0o644)

    # bases/ exists from the start: aveserver refuses a missing database directory, and the built-in
    # test signatures (guide 8) work with an empty one until keepup2date or the admin fills it.
    # quarantine/ and licensing/ are the filter's (the .deb's postinst gives them to kluser); the
    # state tree above them stays root's (docs/security.md).
    state_dirs = (layout.state, f"{layout.state}/bases", f"{layout.state}/quarantine", f"{layout.state}/licensing")
    for d in (layout.etc, *state_dirs, layout.os.log.lstrip("/")):
        (dest / d).mkdir(parents=True, exist_ok=True)
    for link, target in layout.links:
        (dest / link).parent.mkdir(parents=True, exist_ok=True)
        (dest / link).symlink_to(target)

    print("staged commands:", ", ".join(cmds) or "(none)")
    if layout.unit_dir:
        print("staged units:", ", ".join(u for c, u in UNITS.items() if c in cmds) or "(none)")
    return cmds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="stage kav4mailservers into a package build root")
    ap.add_argument("src", help="source tree (pyproject.toml, kavsetup/, runtime/)")
    ap.add_argument("dest", help="staging root")
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="debian")
    ap.add_argument("--units", type=Path, help="directory holding the systemd unit files")
    ap.add_argument("--python", help="interpreter the wrappers name (default: the layout's; ports: PYTHON_CMD)")
    args = ap.parse_args(argv)
    layout = LAYOUTS[args.layout]
    if args.python:
        layout = replace(layout, python=args.python)
    stage(args.src, args.dest, layout, args.units)
    return 0


if __name__ == "__main__":
    sys.exit(main())
