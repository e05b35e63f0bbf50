"""The matrix's rpm columns (issue 17): the built .rpm in the same Debian roots with real MTAs.

Debian's `rpm` is in every root (spec.COMMON_PACKAGES), so `rpm -i --nodeps` runs the package's
real scriptlets (%pre, %post, %preun, %postun) against a real Postfix, Exim or Sendmail. `--nodeps`
because Debian's rpm database is empty: the python3dist() Requires are satisfied by Debian's
packages, which rpm cannot see. Everything else is what an RHEL administrator would do.

rpm-install  `rpm -i`: %pre creates kluser/filter, %post runs `kavsetup install --non-interactive`
             with /etc/kav/5.5/setup.yaml; the MTA configuration changed; the admin address arrived
rpm-clean    daemons from the package's units (/usr/lib/systemd/system) + the MTA: X-Anti-Virus
rpm-eicar    EICAR not delivered as sent; recipient and admin notices; quarantine grows
rpm-upgrade  `rpm -U` to the same tree rebuilt with Release 2: the MTA's configuration and the
             admin's kav4mailservers.conf (%config(noreplace)) unchanged, kavsetup not re-run; the
             daemons restarted from the new package's units (what %postun's try-restart does
             under systemd) and mail flows with X-Anti-Virus
rpm-erase    `rpm -e`: %preun's `kavsetup uninstall` restores the MTA configuration byte for byte
             (contents, modes, owners); kavsetup's MTA units gone; the MTA delivers without us
rpm-refuse   (Postfix, own sandbox) another content_filter is set: %post fails and says which
             command to run, the MTA configuration is byte-identical, and `rpm -e` still works

The rpm columns run in their own sandbox (a fresh copy of the cell's root), after the .deb's.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import snapshot, units
from .sandbox import Sandbox, SandboxError, until
from .spec import HOSTNAME

if TYPE_CHECKING:
    from .scenarios import Cell

RPM_SCENARIOS: tuple[str, ...] = ("rpm-install", "rpm-clean", "rpm-eicar", "rpm-upgrade", "rpm-erase", "rpm-refuse")
#: The MTAs the issue asks the rpm columns for (the qmail stand-in has the .deb columns).
RPM_KINDS: tuple[str, ...] = ("postfix", "exim", "sendmail")
NEEDS: dict[str, tuple[str, ...]] = {
    "rpm-clean": ("rpm-install",),
    "rpm-eicar": ("rpm-clean",),
    "rpm-upgrade": ("rpm-clean",),
    "rpm-erase": ("rpm-install",),
}
PACKAGE = "kav4mailservers"
REPO = Path(__file__).resolve().parents[3]

_built: dict[str, Path] = {}
_lock = threading.Lock()


def build_rpms() -> tuple[Path, Path]:
    """Release 1 and Release 2 of the working tree, built once per process by `make rpm`'s script."""
    with _lock:
        if not _built:
            out = Path(tempfile.mkdtemp(prefix="kavmatrix-rpms-"))
            atexit.register(shutil.rmtree, out, True)
            for release in ("1", "2"):
                env = {**os.environ, "KAV_RPM_DIST": str(out), "KAV_RPM_RELEASE": release, "KAV_RPM_LINT": "0"}
                r = subprocess.run(["bash", str(REPO / "pkg/rpm/build.sh")], env=env, capture_output=True, text=True)
                if r.returncode != 0:
                    tail = f"{r.stdout[-1500:]}{r.stderr[-1500:]}"
                    raise RuntimeError(f"pkg/rpm/build.sh (Release {release}) failed:\n{tail}")
                _built[release] = next(out.glob(f"kav4mailservers-*-{release}.noarch.rpm"))
        return _built["1"], _built["2"]


class RpmRun:
    """State carried between the rpm scenarios of one cell; drives the cell's helpers in its own sandbox."""

    def __init__(self, cell: Cell, sb: Sandbox) -> None:
        from .scenarios import Cell

        self.c = Cell(cell.spec, None)  # fresh state: the .deb columns' snapshot is not ours
        self.c.sb = sb
        self.sb = sb
        self.before: snapshot.Snapshot = {}
        self.integrated: snapshot.Snapshot = {}

    def _rpm(self, *args: str) -> subprocess.CompletedProcess:
        return self.sb.run(["rpm", *args], timeout=300)

    def install(self) -> str:
        from .scenarios import ADMIN_ADDRESS, ANSWERS, CONF

        c, sb = self.c, self.sb
        self.before = snapshot.take(sb.root, c.spec.flavour.config_paths)
        answers = sb.path(ANSWERS)
        answers.parent.mkdir(parents=True, exist_ok=True)
        answers.write_text(f"admin_address: {ADMIN_ADDRESS}\n")
        rpm1, _ = build_rpms()
        shutil.copyfile(rpm1, sb.path("/tmp/kav4mailservers-1.rpm"))
        r = self._rpm("-i", "--nodeps", "/tmp/kav4mailservers-1.rpm")
        after = snapshot.take(sb.root, c.spec.flavour.config_paths)
        if r.returncode != 0:
            untouched = snapshot.compare(self.before, after)
            assert not untouched, "%post failed AND changed the MTA configuration:\n" + "\n".join(untouched[:30])
            assert "kavsetup install" in r.stderr, f"%post failed without saying what to run:\n{r.stderr[-1500:]}"
            raise AssertionError(f"rpm -i failed ({r.returncode}); MTA config untouched:\n{r.stderr[-2500:]}")
        changed = snapshot.compare(self.before, after)
        assert changed, f"%post ran but the {c.spec.flavour.kind} configuration is unchanged\n{r.stderr[-1500:]}"
        conf = sb.path(CONF)
        assert conf.exists() and ADMIN_ADDRESS in conf.read_text(), f"{ANSWERS} admin_address not in {CONF}"
        for what, db in (("kluser", "passwd"), ("filter", "group")):
            assert sb.run(["getent", db, what]).returncode == 0, f"%pre did not create {db} entry {what}"
        st = sb.path("/var/lib/kav/5.5/kav4mailservers").stat()
        assert oct(st.st_mode & 0o777) == "0o750", f"state directory mode {oct(st.st_mode)} (want 0750 per %files)"
        kind = {"exim": "exim", "sendmail": "sendmail"}.get(c.spec.flavour.kind)
        if kind:
            found = [p for p in sorted(sb.path("/etc/systemd/system").glob(f"kav4ms-{kind}-*.service"))
                     if p.name.endswith(("-listen.service", "-deliver.service"))]  # fmt: skip
            assert len(found) == 2, f"kavsetup installed no listen/deliver units for {kind}: {found}"
            c.mta_units = [units.load(p) for p in found]
        c.integrated = True
        self.integrated = after
        return f"rpm -i ok; {len(changed)} MTA config entries changed by %post"

    def clean(self) -> str:
        c = self.c
        c.quarantine = c._admin_configures_quarantine()
        c._start_product()
        c._start_mta()
        sent = c._deliver_clean(expect_header=True)
        return f"{sent.token} delivered with X-Anti-Virus"

    def eicar(self) -> str:
        return self.c.eicar()

    def upgrade(self) -> str:
        from .scenarios import AVESERVER_UNIT, CONF, SMTPSCANNER_UNIT

        c, sb = self.c, self.sb
        conf_before = sb.path(CONF).read_bytes()
        config_before = snapshot.take(sb.root, c.spec.flavour.config_paths)
        _, rpm2 = build_rpms()
        shutil.copyfile(rpm2, sb.path("/tmp/kav4mailservers-2.rpm"))
        # The MTA keeps running through the upgrade (mail flowing at every step); so do the old daemons.
        r = self._rpm("-U", "--nodeps", "/tmp/kav4mailservers-2.rpm")
        assert r.returncode == 0, f"rpm -U failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        q = self._rpm("-q", "--qf", "%{RELEASE}", PACKAGE)
        assert q.stdout.strip().startswith("2"), f"after rpm -U, rpm -q says release {q.stdout!r}"
        diff = snapshot.compare(config_before, snapshot.take(sb.root, c.spec.flavour.config_paths))
        assert not diff, "rpm -U changed the MTA's integration:\n" + "\n".join(diff[:30])
        assert sb.path(CONF).read_bytes() == conf_before, f"rpm -U changed the admin's {CONF} (%config(noreplace))"
        # What %postun's `systemctl try-restart` does under systemd: the daemons restart from the new files.
        # First let the MTA finish what is in flight (the eicar notices), as an admin restarting a
        # filter would: a message caught in the restart window waits for the MTA's retry time.
        until(lambda: c._queued() == 0, 30)
        for name in (SMTPSCANNER_UNIT, AVESERVER_UNIT):
            if name in c.running:
                sb.stop(name)
                c.running.remove(name)

        def ave_gone() -> bool:  # the old aveserver has exited (it refuses to start beside a live one)
            pidfile = sb.path("/var/run/aveserver.pid")
            pid = pidfile.read_text().split()[0] if pidfile.exists() else ""
            return not pid or sb.run(["kill", "-0", pid]).returncode != 0

        assert until(ave_gone, 30), "the old aveserver did not exit within 30s of SIGTERM"
        # Its exit removes the socket path; starting the new one before that, the old one's cleanup
        # would remove the NEW socket (systemd's restart waits for the whole stop, as this does).
        until(lambda: not sb.path("/run/aveserver").exists(), 30)
        sb.path("/run/aveserver").unlink(missing_ok=True)  # left only by a master that was SIGKILLed
        c._start_product()
        # The socket file appears at bind(); wait until aveserver accepts, as systemd's readiness
        # would, or the first message meets a 4xx and waits for the MTA's retry time (not lost).
        probe = "import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/aveserver')"
        assert until(lambda: sb.run(["python3", "-c", probe]).returncode == 0, 30), "aveserver does not accept"
        # A standing smtpscanner must listen again before mail arrives, or the MTA records a retry
        # time for it (Exim: ~15 min) and the message waits in its queue: not lost, but not "flowing".
        m = re.search(r"^\s*ListenAddress\s*=\s*inet:[^:]*:(\d+)", sb.path(CONF).read_text(), re.M)
        if m:
            assert sb.wait_port(int(m.group(1)), timeout=30), f"smtpscanner did not listen on {m.group(1)} again"
        try:
            sent = c._deliver_clean(expect_header=True)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nMTA queue after the restart: {c._queued()} message(s)") from None
        return f"Release 2 installed; integration and conf unchanged; daemons restarted; {sent.token} scanned"

    def refuse(self) -> str:
        c, sb = self.c, self.sb
        sb.run(["postconf", "-e", "content_filter=smtp:[127.0.0.1]:10024"]).check()
        before = snapshot.take(sb.root, c.spec.flavour.config_paths)
        rpm1, _ = build_rpms()
        shutil.copyfile(rpm1, sb.path("/tmp/kav4mailservers-1.rpm"))
        r = self._rpm("-i", "--nodeps", "/tmp/kav4mailservers-1.rpm")
        # rpm does not fail the transaction for a failing %post (the package is installed); what
        # the package owes the admin is the reason, the state of the MTA and the command to run.
        assert "%post(kav4mailservers" in r.stderr and "scriptlet failed" in r.stderr, (
            f"%post did not fail on a Postfix that already has another content_filter:\n{r.stderr[-1500:]}")
        assert "content_filter" in r.stderr, f"%post failed without saying why:\n{r.stderr[-1500:]}"
        assert "then run 'kavsetup install --non-interactive" in r.stderr, f"%post did not say what to run:\n{r.stderr}"
        diff = snapshot.compare(before, snapshot.take(sb.root, c.spec.flavour.config_paths))
        assert not diff, "failed %post changed the MTA configuration:\n" + "\n".join(diff[:30])
        e = self._rpm("-e", "--nodeps", PACKAGE)
        assert e.returncode == 0, f"rpm -e of the unintegrated package failed:\n{e.stderr[-1500:]}"
        diff = snapshot.compare(before, snapshot.take(sb.root, c.spec.flavour.config_paths))
        assert not diff, "rpm -e of the unintegrated package changed the MTA configuration:\n" + "\n".join(diff[:30])
        reason = next(line.strip() for line in r.stderr.splitlines() if "content_filter" in line)
        return f"refused, said what to run, config untouched, rpm -e clean: {reason[:140]}"

    def erase(self) -> str:
        c, sb = self.c, self.sb
        c._stop_all()  # guide 7: aveserver and the mail service stopped before removal
        r = self._rpm("-e", "--nodeps", PACKAGE)
        assert r.returncode == 0, f"rpm -e failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        assert self._rpm("-q", PACKAGE).returncode != 0, "rpm -q still finds the package after rpm -e"
        diff = snapshot.compare(self.before, snapshot.take(sb.root, c.spec.flavour.config_paths))
        assert not diff, "MTA configuration differs from the snapshot after rpm -e:\n" + "\n".join(diff[:40])
        left = [u.name for u in c.mta_units if units.find(sb, u.name)]
        assert not left, f"kavsetup's MTA units left after rpm -e: {left}"
        assert not sb.path("/usr/sbin/smtpscanner").exists(), "smtpscanner still installed after rpm -e"
        c.mta_units = []
        c._start_mta()
        try:
            sent = c._deliver_clean(expect_header=False)
        finally:
            c._stop_mta()
        return f"config identical ({len(self.before)} entries); {sent.token} delivered to {HOSTNAME} without us"


def run_rpm(cell: Cell, root: Path, only: tuple[str, ...], log: Callable[[str], None]) -> None:
    """Run the requested rpm scenarios (and what they need) in a fresh sandbox; outcomes into cell."""
    from .scenarios import Blocked, Outcome

    if cell.spec.flavour.kind not in RPM_KINDS:
        return
    wanted = {s for s in only if s in RPM_SCENARIOS}
    while True:
        more = {n for w in wanted for n in NEEDS.get(w, ())} - wanted
        if not more:
            break
        wanted |= more
    if not wanted:
        return
    if shutil.which("rpmbuild") is None:
        for name in RPM_SCENARIOS:
            if name in wanted:
                cell.outcomes[name] = Outcome("blocked", 0.0, "rpmbuild not installed (apt-get install rpm)")
        return
    with Sandbox(root, cell.spec.name + "-rpm") as sb:
        run = RpmRun(cell, sb)
        steps = {"rpm-install": run.install, "rpm-clean": run.clean, "rpm-eicar": run.eicar,
                 "rpm-upgrade": run.upgrade, "rpm-erase": run.erase}
        for name in RPM_SCENARIOS:
            if name not in wanted or name not in steps:
                continue
            blocker = next((n for n in NEEDS.get(name, ())
                            if cell.outcomes.get(n, Outcome("fail", 0)).status != "pass"), None)
            installed = sb.run(["rpm", "-q", PACKAGE]).returncode == 0
            if blocker and not (name == "rpm-erase" and installed):
                cell.outcomes[name] = Outcome("blocked", 0.0, f"needs {blocker}")
                log(f"{cell.spec.name} {name}: blocked")
                continue
            started = time.monotonic()
            try:
                outcome = Outcome("pass", 0.0, steps[name]())
            except Blocked as exc:
                outcome = Outcome("blocked", 0.0, str(exc))
            except (AssertionError, SandboxError, OSError, TimeoutError, RuntimeError) as exc:
                outcome = Outcome("fail", 0.0, f"{exc}\n{sb.log_tail(25)}")
            outcome.seconds = time.monotonic() - started
            cell.outcomes[name] = outcome
            log(f"{cell.spec.name} {name}: {outcome.status} ({outcome.seconds:.1f}s)")
        run.c._stop_all()
    if "rpm-refuse" in wanted and cell.spec.flavour.kind == "postfix":
        started = time.monotonic()
        with Sandbox(root, cell.spec.name + "-rpm-refuse") as sb:
            try:
                outcome = Outcome("pass", 0.0, RpmRun(cell, sb).refuse())
            except (AssertionError, SandboxError, OSError, TimeoutError, RuntimeError) as exc:
                outcome = Outcome("fail", 0.0, f"{exc}\n{sb.log_tail(25)}")
        outcome.seconds = time.monotonic() - started
        cell.outcomes["rpm-refuse"] = outcome
        log(f"{cell.spec.name} rpm-refuse: {outcome.status} ({outcome.seconds:.1f}s)")
