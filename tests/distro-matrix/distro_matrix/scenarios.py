"""The matrix scenarios for one cell (suite x MTA), run in order in one sandbox.

baseline  the MTA as Debian installed it delivers a clean message to /var/mail/alice (no product)
install   `dpkg -i` our .deb; postinst runs `kavsetup install --non-interactive` and starts aveserver
          through the init script (policy-rc.d lets our services start, nothing else)
ownership the installed tree matches docs/security.md's ownership table (every path we created)
clean     MTA + aveserver + smtpscanner running: a clean message arrives with `X-Anti-Virus:`
eicar     EICAR is not delivered as sent; recipient notice, admin notice, quarantine entry
queue     aveserver stopped: mail waits in the MTA's queue; started again: it is delivered
          (qmail stand-in: qmail-queue exits with a temporary code, so the SMTP client keeps it)
unprivileged  as `nobody`: aveserver's socket refused; with the clamd TCP port opened by the admin,
          SHUTDOWN/RELOAD refused and SCAN of a FIFO or /dev/zero an error within 1 s; mail flows
doctor    (not qmail) `kavsetup doctor` passes, then names each link broken on purpose (doctor_scenario.py)
dialogue  (Postfix) integration undone, then `kavsetup setup` answered through a real pty (pexpect):
          mail flows through the filter again
reconfigure (Postfix) debconf preseeding + `dpkg-reconfigure kav4mailservers` with other ports: one
          journaled change (`kavsetup reconfigure`), mail still flows through the filter
remove    `dpkg -r`: MTA configuration identical to the snapshot (bytes, modes, owners); no process of
          ours left (prerm stopped them); MTA delivers. Postfix, Exim, Sendmail: a message deferred
          while aveserver was down (Exim/Sendmail: in the listening instance's own spool) is delivered
          after `dpkg -r` with the MTA running, with no manual step
purge     `dpkg --purge`: no file, user, group or process of ours is left
refuse    (Postfix) another content_filter is set: postinst fails, says why, and the MTA's
          configuration is byte-identical; `dpkg --purge` then leaves nothing (own sandbox)
rpm-*     the .rpm's columns (Postfix, Exim, Sendmail), in their own sandbox: rpm_scenarios.py

A scenario whose product part has not landed is BLOCKED with the reason (never faked, never a pass);
one that ran only the parts that exist is PARTIAL with the reason; later scenarios that need a
failed or blocked one are BLOCKED by it.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import doctor_scenario, mail, ownership, snapshot, units
from .mta import CONTROLS
from .roots import ensure_root
from .rpm_scenarios import RPM_KINDS, RPM_SCENARIOS, run_rpm
from .sandbox import Sandbox, SandboxError, until
from .spec import ADMIN_USER, HOSTNAME, MAIL_USER, RootSpec

SCENARIOS: tuple[str, ...] = ("baseline", "install", "ownership", "clean", "eicar", "queue", "unprivileged",
                              "doctor",
                              "dialogue", "reconfigure",
                              "remove", "purge",
                              "refuse", "proxy", *RPM_SCENARIOS)
#: Scenarios that only make sense for some MTA kinds.
ONLY_FOR: dict[str, tuple[str, ...]] = {"doctor": ("postfix", "exim", "sendmail"),
                                         "refuse": ("postfix",), "proxy": ("postfix",), "reconfigure": ("postfix",),
                                         "dialogue": ("postfix",), **{s: RPM_KINDS for s in RPM_SCENARIOS},
                                         "rpm-refuse": ("postfix",)}
PACKAGE = "kav4mailservers"
CONF = "/etc/kav/5.5/kav4mailservers/kav4mailservers.conf"
ANSWERS = "/etc/kav/5.5/setup.yaml"
ADMIN_ADDRESS = f"{ADMIN_USER}@{HOSTNAME}"
AVESERVER_UNIT = "kav4mailservers-aveserver.service"
SMTPSCANNER_UNIT = "kav4mailservers-smtpscanner.service"
#: The package's LSB init scripts (issue 11), named like the units; the roots have no systemd.
INIT_SCRIPTS = {AVESERVER_UNIT: "/etc/init.d/kav4mailservers-aveserver",
                SMTPSCANNER_UNIT: "/etc/init.d/kav4mailservers-smtpscanner"}
#: Run as ``nobody`` inside the cell by the ``unprivileged`` scenario; prints what it saw as JSON.
_UNPRIVILEGED_PROBE = """
import json, os, socket, sys, tempfile, time
port = int(sys.argv[1])
out = {}
try:
    socket.socket(socket.AF_UNIX).connect("/run/aveserver")
    out["socket"] = "connected"
except OSError as exc:
    out["socket"] = type(exc).__name__

def ask(cmd):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t = time.monotonic()
        s.sendall(b"z" + cmd.encode() + b"\\0")
        data = b""
        while not data.endswith(b"\\0"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.rstrip(b"\\0").decode(errors="replace"), time.monotonic() - t

d = tempfile.mkdtemp()
os.chmod(d, 0o755)  # aveserver (kluser) must reach the FIFO to meet its open checks
fifo = os.path.join(d, "fifo")
os.mkfifo(fifo)
out["SHUTDOWN"] = ask("SHUTDOWN")[0]
out["RELOAD"] = ask("RELOAD")[0]
out["fifo"] = ask("SCAN " + fifo)
out["/dev/zero"] = ask("SCAN /dev/zero")
out["PING"] = ask("PING")[0]
print(json.dumps(out))
"""

#: The roots' policy-rc.d forbids every start (roots.py); a cell lets our package start its own
#: services, so that "the package starts and stops its daemons" is what is tested.
POLICY_RC_D = ("#!/bin/sh\n# distro-matrix: the package under test may start its services; nothing else\n"
               'case "$1" in kav4mailservers-*) exit 0 ;; esac\nexit 101\n')
#: Command lines of our daemons (for "no process of ours left").
OUR_PROCESSES = re.compile(r"(^|/)(aveserver|smtpscanner|kavconsole)\b|runtime\.(engine|filter|console)")

#: Trees a purge must leave exactly as before the install (besides the MTA's own config, compared
#: separately). Volatile places (mailboxes, MTA queues, dpkg's database, logs) are not compared.
_VOLATILE = re.compile(
    r"^/(proc|dev|run|sys|tmp|var/tmp|var/mail|var/spool/(postfix|exim4|mqueue|mqueue-client)|var/qmail/queue|"
    r"var/lib/(dpkg|exim4|postfix|sendmail|ucf)|var/cache|var/backups|var/db/sendmail|"
    r"etc/mail/sendmail\.pid|root)(/|$)"
    r"|^/var/log/(matrix-|dpkg\.log|apt|alternatives\.log|exim4|mail\.|syslog|sendmail|lastlog|faillog|[wb]tmp)"
)


class Blocked(Exception):
    """A product part this scenario needs is not there (yet)."""


class Partial(Exception):
    """What exists passed, but part of the scenario could not run; the message says which."""


@dataclass
class Outcome:
    status: str  # pass | fail | blocked | partial
    seconds: float
    detail: str = ""


@dataclass
class Cell:
    spec: RootSpec
    deb: Path | None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    build_seconds: float = 0.0

    # state carried between scenarios
    sb: Sandbox | None = None
    config_before: snapshot.Snapshot = field(default_factory=dict)
    tree_before: set[str] = field(default_factory=set)
    integrated: bool = False
    mta_units: list[units.Unit] = field(default_factory=list)  # kavsetup's units for the MTA's instances
    quarantine: Path = Path("/var/lib/kav/5.5/kav4mailservers/quarantine")
    running: list[str] = field(default_factory=list)
    answers: str = ""  # answers beyond admin_address the install scenario gives (the proxy scenario's form)

    @property
    def control(self):  # noqa: ANN201 - MtaControl
        return CONTROLS[self.spec.flavour.kind]

    # -- driver ------------------------------------------------------------------------------------
    def run(self, only: tuple[str, ...] = SCENARIOS, log: Callable[[str], None] = lambda s: None) -> dict[str, Outcome]:
        root, self.build_seconds = ensure_root(self.spec)
        steps: dict[str, Callable[[], str]] = {
            "baseline": self.baseline,
            "install": self.install,
            "ownership": self.ownership,
            "clean": self.clean,
            "eicar": self.eicar,
            "queue": self.queue,
            "unprivileged": self.unprivileged,
            "doctor": lambda: doctor_scenario.run(self),
            "dialogue": self.dialogue,
            "reconfigure": self.reconfigure,
            "remove": self.remove,
            "purge": self.purge,
        }
        needs = {
            "install": ("baseline",),
            "ownership": ("install",),
            "clean": ("install",),
            "eicar": ("clean",),
            "queue": ("clean",),
            "unprivileged": ("clean",),
            "doctor": ("clean",),
            "dialogue": ("clean",),
            "reconfigure": ("clean",),
            "remove": ("install",),
            "purge": ("remove",),
        }
        wanted = set(only)
        while True:  # what the requested scenarios need, transitively
            more = {n for w in wanted for n in needs.get(w, ())} - wanted
            if not more:
                break
            wanted |= more
        with Sandbox(root, self.spec.name) as sb:
            self.sb = sb
            for name in SCENARIOS:
                if name not in wanted or name in RPM_SCENARIOS:
                    continue
                if self.spec.flavour.kind not in ONLY_FOR.get(name, (self.spec.flavour.kind,)):
                    continue
                if name in ("refuse", "proxy"):
                    continue  # run in their own sandboxes, below
                blocker = next(
                    (n for n in needs.get(name, ()) if self.outcomes.get(n, Outcome("fail", 0)).status
                     not in ("pass", "partial")),
                    None,
                )  # fmt: skip
                if blocker and not (name in ("remove", "purge") and self._package_installed()):
                    prior = self.outcomes.get(blocker)
                    why = prior.detail.splitlines()[0] if prior and prior.detail else blocker
                    self.outcomes[name] = Outcome("blocked", 0.0, f"needs {blocker}: {why}")
                    log(f"{self.spec.name} {name}: blocked")
                    continue
                started = time.monotonic()
                outcome = _outcome(steps[name], sb)
                outcome.seconds = time.monotonic() - started
                self.outcomes[name] = outcome
                log(f"{self.spec.name} {name}: {outcome.status} ({outcome.seconds:.1f}s)")
            self._stop_all()
        self.sb = None
        if "refuse" in only and self.spec.flavour.kind in ONLY_FOR["refuse"]:
            self._own_sandbox(root, "refuse", self.refuse, log)
        if "proxy" in only and self.spec.flavour.kind in ONLY_FOR["proxy"]:
            self._own_sandbox(root, "proxy", self.proxy, log)
        run_rpm(self, root, only, log)
        return self.outcomes

    def _own_sandbox(self, root: Path, name: str, step: Callable[[], str], log: Callable[[str], None]) -> None:
        """A scenario that installs the package its own way, in a fresh sandbox of the same root."""
        started = time.monotonic()
        with Sandbox(root, f"{self.spec.name}-{name}") as sb:
            self.sb = sb
            try:
                outcome = _outcome(step, sb)
            finally:
                self._stop_all()
                self.sb = None
        outcome.seconds = time.monotonic() - started
        self.outcomes[name] = outcome
        log(f"{self.spec.name} {name}: {outcome.status} ({outcome.seconds:.1f}s)")

    # -- helpers -------------------------------------------------------------------------------------
    def _sb(self) -> Sandbox:
        assert self.sb is not None
        return self.sb

    def _package_installed(self) -> bool:
        """Present in any state dpkg can remove (installed, half-configured, unpacked...)."""
        r = self._sb().run(["dpkg-query", "-W", "-f", "${db:Status-Status}", PACKAGE])
        return r.returncode == 0 and r.stdout.strip() not in ("", "not-installed", "config-files")

    def _stop_all(self, keep_package_services: bool = False) -> None:
        """Stop what the harness started; with ``keep_package_services`` the daemons the package's
        init scripts run are left for the package to stop (remove)."""
        sb = self._sb()
        by_name = {u.name: u for u in self.mta_units}
        for name in reversed(list(self.running)):
            if name.startswith("initd:"):
                if keep_package_services:
                    continue
                self._initd(name[6:], "stop")
            elif name == "mta":
                self.control.stop_in(sb)
            elif name in by_name:
                units.stop(sb, by_name[name])
            else:
                sb.stop(name)
            self.running.remove(name)

    # -- the package's own services (issue 11: started and stopped by the package) ------------------
    def _initd(self, unit_name: str, action: str):  # noqa: ANN202 - sandbox.Result
        return self._sb().run([INIT_SCRIPTS[unit_name], action], timeout=90)

    def _has_initd(self, unit_name: str) -> bool:
        return self._sb().path(INIT_SCRIPTS[unit_name]).exists()

    def _product_start(self, unit_name: str, action: str = "start") -> None:
        """Through the package's init script where it ships one (what a non-systemd host runs),
        else the unit's ExecStart (older packages)."""
        sb = self._sb()
        if self._has_initd(unit_name):
            r = self._initd(unit_name, action)
            assert r.returncode == 0, (
                f"{INIT_SCRIPTS[unit_name]} {action} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
            if f"initd:{unit_name}" not in self.running:
                self.running.append(f"initd:{unit_name}")
            return
        path = units.find(sb, unit_name)
        if path is None:
            raise Blocked(f"{unit_name} not shipped (command not in the package yet)")
        units.start(sb, units.load(path))
        self.running.append(unit_name)

    def _product_stop(self, unit_name: str) -> None:
        if f"initd:{unit_name}" in self.running:
            r = self._initd(unit_name, "stop")
            assert r.returncode == 0, f"{INIT_SCRIPTS[unit_name]} stop failed:\n{r.stdout}{r.stderr}"
            self.running.remove(f"initd:{unit_name}")
        elif unit_name in self.running:
            self._sb().stop(unit_name)
            self.running.remove(unit_name)

    def _aveserver_alive(self) -> bool:
        if f"initd:{AVESERVER_UNIT}" in self.running:
            return self._initd(AVESERVER_UNIT, "status").returncode == 0
        return self._sb().running(AVESERVER_UNIT)

    def _our_processes(self) -> list[str]:
        """Command lines of our daemons still running in the cell (its PID namespace)."""
        out = self._sb().sh(
            'for p in /proc/[0-9]*; do c=$(tr "\\0" " " < "$p/cmdline" 2>/dev/null) || continue; '
            '[ -n "$c" ] && echo "${p#/proc/} $c"; done; true').stdout
        return [ln for ln in out.splitlines() if OUR_PROCESSES.search(ln.split(" ", 1)[-1])
                and "/proc/[0-9]" not in ln]

    def _start_mta(self) -> None:
        sb = self._sb()
        if not self.mta_units:
            self.control.start_in(sb)
            self.running.append("mta")
            return
        # Integrated Sendmail/Exim: the instances kavsetup's units describe (guide 4.4.1, 4.4.4),
        # the delivering one first so scanned mail always has somewhere to go.
        if self.control.prepare:
            sb.sh(self.control.prepare).check()
        for unit in sorted(self.mta_units, key=lambda u: "listen" in u.name):
            units.start(sb, unit)
            self.running.append(unit.name)
        if not sb.wait_port(25, timeout=30):
            raise SandboxError(f"integrated {self.spec.flavour.kind} did not listen on 127.0.0.1:25\n{sb.log_tail()}")

    def _stop_mta(self) -> None:
        sb = self._sb()
        if "mta" in self.running:
            self.control.stop_in(sb)
            self.running.remove("mta")
        for unit in self.mta_units:
            if unit.name in self.running:
                units.stop(sb, unit)
                self.running.remove(unit.name)

    def _listen_config(self) -> list[str]:
        """`-C FILE` of the receiving instance, where mail waits while it cannot be scanned."""
        for unit in self.mta_units:
            if "listen" in unit.name and "-C" in unit.exec_start:
                return ["-C", unit.exec_start[unit.exec_start.index("-C") + 1]]
        return []

    def _queued(self) -> int:
        sb = self._sb()
        extra = self._listen_config()
        if not extra:
            return self.control.queued(sb)
        if self.spec.flavour.kind == "exim":
            out = sb.run([self.control.queue_cmd[0], "-bpc", *extra]).stdout
            return int(out.strip() or 0)
        out = sb.run(["/usr/sbin/sendmail", "-bp", *extra]).stdout
        m = re.search(r"Total requests: (\d+)", out)
        return int(m.group(1)) if m else 0

    def _postfix_queued_to(self, address: str) -> list[str]:
        """Queue ids of the messages in Postfix's queue addressed to ``address`` (``postqueue -j``:
        one JSON object per message).  Not the whole queue: when the before-queue filter refuses
        the connection, Postfix may queue its own notice to postmaster about it (notify_classes),
        delivered a moment later; counting every message made the proxy scenario race with it."""
        out = self._sb().run(["postqueue", "-j"], timeout=30).stdout
        ids = []
        for line in out.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if any(str(r.get("address", "")).lower() == address.lower() for r in doc.get("recipients", [])):
                ids.append(str(doc.get("queue_id", "?")))
        return ids

    def _flush(self) -> None:
        sb = self._sb()
        extra = self._listen_config()
        if not extra:
            self.control.flush(sb)
        elif self.spec.flavour.kind == "exim":
            sb.run([self.control.queue_cmd[0], "-qff", *extra], timeout=60)
        else:
            sb.run(["/usr/sbin/sendmail", "-q", *extra], timeout=60)

    @property
    def _qmail(self) -> bool:
        return self.spec.flavour.kind == "qmail"

    def _send(self, to: str, attachment: bytes | None = None) -> mail.Sent:
        """SMTP to port 25; for the qmail stand-in, qmail-queue(8) as qmail-smtpd would call it."""
        if self._qmail:
            return mail.qmail_send(self._sb(), to, attachment=attachment)
        return mail.send(self._sb(), to, attachment=attachment)

    def _find(self, user: str, needle: str) -> list:
        if self._qmail:
            return mail.qmail_find(self._sb(), user, needle)
        return mail.find(self._sb(), user, needle)

    def _wait_for(self, user: str, needle: str, timeout: float) -> list:
        found: list = []

        def seen() -> bool:
            found[:] = self._find(user, needle)
            return bool(found)

        until(seen, timeout)
        return found

    def _deliver_clean(self, expect_header: bool, timeout: float = 30) -> mail.Sent:
        sent = self._send(mail.local(MAIL_USER))
        assert sent.accepted, f"clean message refused: {sent.last_reply}\n{sent.transcript}"
        got = self._wait_for(MAIL_USER, sent.token, timeout)
        assert got, f"clean message {sent.token} not in /var/mail/{MAIL_USER} after {timeout:.0f}s"
        headers = [str(m.get("X-Anti-Virus")) for m in got if m.get("X-Anti-Virus")]
        has = bool(headers)
        if expect_header:
            assert has, f"delivered without X-Anti-Virus header:\n{got[0].as_string()[:1500]}"
            # guide 6.8.4: "<name and version>, bases: YYYYMMDD #N, check: YYYYMMDD <status>"
            fmt = re.compile(r".+, bases: (\d{8}|none) #\d+, check: \d{8} \S+", re.S)  # none: empty database
            assert any(fmt.match(" ".join(h.split())) for h in headers), f"X-Anti-Virus not in 6.8.4 form: {headers}"
        else:
            assert not has, "X-Anti-Virus header present while the product is not installed"
        return sent

    def _tree(self) -> set[str]:
        root = self._sb().root
        out: set[str] = set()
        for p in root.rglob("*"):
            rel = "/" + str(p.relative_to(root))
            if not _VOLATILE.match(rel) and not rel.endswith("__pycache__") and "/__pycache__/" not in rel:
                out.add(rel)
        return out

    # -- scenarios -------------------------------------------------------------------------------------
    def baseline(self) -> str:
        self._start_mta()
        try:
            sent = self._deliver_clean(expect_header=False)
        finally:
            self._stop_mta()
        return f"delivered {sent.token} to /var/mail/{MAIL_USER}"

    def install(self) -> str:
        sb = self._sb()
        if self.deb is None or not self.deb.exists():
            raise Blocked("no .deb: run `make deb` (pkg/deb/build.sh)")
        self.config_before = snapshot.take(sb.root, self.spec.flavour.config_paths)
        self.tree_before = self._tree()
        # The admin answers the installer's questions in advance (guide 3.4; postinst reads this file).
        answers = sb.path(ANSWERS)
        answers.parent.mkdir(parents=True, exist_ok=True)
        answers.write_text(f"admin_address: {ADMIN_ADDRESS}\n{self.answers}")
        policy = sb.path("/usr/sbin/policy-rc.d")
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        shutil.copyfile(self.deb, sb.path("/tmp/kav4mailservers.deb"))
        r = sb.run(["dpkg", "-i", "/tmp/kav4mailservers.deb"], timeout=300)
        if r.returncode != 0:
            # The package's promise: a failed postinst leaves the MTA untouched and says why.
            untouched = snapshot.compare(self.config_before, snapshot.take(sb.root, self.spec.flavour.config_paths))
            assert not untouched, "postinst failed AND changed the MTA configuration:\n" + "\n".join(untouched[:30])
            reason = next((line for line in r.stderr.splitlines() if "not available yet" in line), None)
            if reason:
                raise Blocked(f"{reason.strip()} (postinst failed cleanly: MTA configuration untouched)")
            raise AssertionError(
                f"dpkg -i failed ({r.returncode}); MTA config untouched:\n{r.stdout[-2500:]}\n{r.stderr[-2500:]}"
            )
        if sb.run(["kavsetup", "install", "--help"]).returncode != 0:
            raise Blocked("kavsetup install not available (package installed; postinst skipped integration)")
        status = sb.run(["kavsetup", "status"])
        changed = snapshot.compare(self.config_before, snapshot.take(sb.root, self.spec.flavour.config_paths))
        assert changed, (
            f"postinst ran kavsetup install but the {self.spec.flavour.kind} configuration is unchanged\n"
            f"{r.stdout[-1500:]}{r.stderr[-1500:]}"
        )
        conf = sb.path(CONF)
        assert conf.exists() and ADMIN_ADDRESS in conf.read_text(), f"{ANSWERS} admin_address not in {CONF}"
        self.integrated = True
        kind = {"exim": "exim", "sendmail": "sendmail"}.get(self.spec.flavour.kind)
        if kind:
            found = [p for p in sorted(sb.path("/etc/systemd/system").glob(f"kav4ms-{kind}-*.service"))
                     if p.name.endswith(("-listen.service", "-deliver.service"))]  # fmt: skip
            assert len(found) == 2, f"kavsetup installed no listen/deliver units for {kind}: {found}"
            self.mta_units = [units.load(p) for p in found]
        started = ""
        if self._has_initd(AVESERVER_UNIT):
            # Issue 11: the package starts its daemon (postinst, invoke-rc.d); nobody else did.
            self.running.append(f"initd:{AVESERVER_UNIT}")
            until(lambda: sb.path("/run/aveserver").exists(), 30)
            assert self._aveserver_alive() and sb.path("/run/aveserver").exists(), (
                f"postinst did not start aveserver:\n{r.stderr[-1500:]}\n"
                f"{self._initd(AVESERVER_UNIT, 'status').stdout}")
            started = "; aveserver started by postinst"
        if self.spec.flavour.kind == "postfix":
            # Issue 20: the installer's default is the daemon form; kavsetup started smtpscanner
            # through the init script and it answered before Postfix was pointed at it.
            listen = self._listen_address()
            assert listen.startswith("inet:"), f"Postfix not integrated in its daemon form: ListenAddress={listen!r}"
            assert sb.path("/etc/postfix/master.cf").read_text().count("--stdio") == 0, "master.cf spawns smtpscanner"
            if self._has_initd(SMTPSCANNER_UNIT):
                self.running.append(f"initd:{SMTPSCANNER_UNIT}")
                port = int(listen.rsplit(":", 1)[1])
                assert sb.wait_port(port, timeout=30) and self._initd(SMTPSCANNER_UNIT, "status").returncode == 0, (
                    f"smtpscanner not running on {listen} after dpkg -i:\n{r.stderr[-1500:]}")
                assert f"{SMTPSCANNER_UNIT.removesuffix('.service')}: started" in r.stdout + r.stderr, (
                    f"kavsetup did not say it started smtpscanner:\n{r.stderr[-1500:]}")
                started += f"; smtpscanner started by kavsetup on {listen}"
        return f"dpkg -i ok; {len(changed)} MTA config entries changed; status rc={status.returncode}{started}"

    def ownership(self) -> str:
        return ownership.check(self._sb())

    def _start_product(self) -> None:
        sb = self._sb()
        wanted = [AVESERVER_UNIT]
        if self._scanner_listens():
            wanted.append(SMTPSCANNER_UNIT)
        for unit_name in wanted:
            # smtpscanner re-reads what the admin just changed (quarantine): restart, not start
            self._product_start(unit_name, "restart" if unit_name == SMTPSCANNER_UNIT else "start")
        listen = self._listen_address()
        if SMTPSCANNER_UNIT in wanted and listen.startswith("unix:"):  # the qmail-queue client's socket
            assert until(lambda: sb.path(listen[5:]).exists(), 30), f"smtpscanner did not open {listen[5:]}"
        elif SMTPSCANNER_UNIT in wanted and listen.startswith("inet:"):
            assert sb.wait_port(int(listen.rsplit(":", 1)[1]), timeout=30), f"smtpscanner not listening on {listen}"
        until(lambda: sb.path("/run/aveserver").exists() or not self._aveserver_alive(), 30)
        if not sb.path("/run/aveserver").exists():
            state = "exited" if not self._aveserver_alive() else "running, no socket after 30s"
            out = sb.path(f"/var/log/matrix-{AVESERVER_UNIT}.out")
            last = (out.read_text(errors="replace").strip().splitlines() or ["(no output)"])[-1] if out.exists() else ""
            raise AssertionError(f"aveserver did not open /run/aveserver ({state}): {last}")

    def _listen_address(self) -> str:
        conf = self._sb().path(CONF)
        text = conf.read_text(errors="replace") if conf.exists() else ""
        m = re.search(r"^\s*ListenAddress\s*=\s*(\S+)", text, re.M)
        return m.group(1) if m else ""

    def _scanner_listens(self) -> bool:
        """smtpscanner is a standing daemon unless the MTA spawns it (`ListenAddress=stdio`, guide 4.4.3)."""
        listen = self._listen_address()
        return bool(listen) and listen != "stdio"

    def _admin_configures_quarantine(self) -> Path:
        """What an admin does after installing (guide 6.1.3): keep infected mail in quarantine."""
        sb = self._sb()
        sb.run(["kavsetup", "config", "set", CONF, "smtpscan.group:default.Quarantine=yes",
                "smtpscan.group:default.InfectedQuarantine=yes"]).check()  # fmt: skip
        shown = sb.run(["kavsetup", "config", "show", CONF, "--section", "smtpscan.group:default", "--json"]).check()
        m = re.search(r'"QuarantinePath"\s*:\s*"([^"]+)"', shown.stdout)
        assert m, f"no QuarantinePath in `kavsetup config show`:\n{shown.stdout[:800]}"
        return Path(m.group(1))

    def clean(self) -> str:
        if not self._sb().path("/usr/sbin/smtpscanner").exists():
            raise Blocked("smtpscanner command not in the package yet (runtime/filter)")
        self.quarantine = self._admin_configures_quarantine()
        self._start_product()
        self._start_mta()
        sent = self._deliver_clean(expect_header=True)
        if self._qmail:
            return f"{sent.token} delivered with X-Anti-Virus; {self._qmail_unprivileged()}"
        return f"{sent.token} delivered with X-Anti-Virus"

    def _qmail_unprivileged(self) -> str:
        """Issue 11 item 4: qmail-smtpd (as qmaild) and qmail-inject (as any local user) run
        qmail-queue as themselves. Submitted as the unprivileged MAIL_USER, the message is scanned and
        queued by the set-uid original, and the Received line names the submitting uid."""
        from email.message import EmailMessage

        sb = self._sb()
        tok = mail.token()
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = f"{MAIL_USER}@{HOSTNAME}", mail.local(MAIL_USER), f"test {tok}"
        m.set_content(f"Body of {tok}\n")
        msg, env = sb.path(f"/tmp/{tok}.msg"), sb.path(f"/tmp/{tok}.env")
        msg.write_bytes(m.as_bytes())
        env.write_bytes(f"F{MAIL_USER}@{HOSTNAME}\0T{mail.local(MAIL_USER)}\0\0".encode())
        for f in (msg, env):
            f.chmod(0o644)
        # qmail-queue(8): the message on descriptor 0, the envelope on descriptor 1
        r = sb.run(["setpriv", "--reuid", MAIL_USER, "--regid", MAIL_USER, "--init-groups", "--",
                    "sh", "-c", 'exec /var/qmail/bin/qmail-queue <"$0" 1<"$1"', f"/tmp/{tok}.msg", f"/tmp/{tok}.env"])
        assert r.returncode == 0, f"qmail-queue as {MAIL_USER} exited {r.returncode}: {r.stderr.strip()[-500:]}"
        got = self._wait_for(MAIL_USER, tok, 30)
        assert got and got[0].get("X-Anti-Virus"), f"{tok} from {MAIL_USER} not queued with X-Anti-Virus"
        uid = sb.run(["id", "-u", MAIL_USER]).check().stdout.strip()
        received = " ".join(" ".join(str(h).split()) for h in got[0].get_all("Received", []))
        assert f"invoked by uid {uid}" in received, f"no Received line naming uid {uid}: {received[:500]}"
        return f"{tok} submitted as {MAIL_USER} (uid {uid}) through kavqmailqueue, scanned and queued"

    def eicar(self) -> str:
        sb = self._sb()
        qdir = sb.path(str(self.quarantine))
        before = _count_files(qdir)
        sent = self._send(mail.local(MAIL_USER), attachment=mail.EICAR)
        assert sent.accepted, f"MTA refused the message: {sent.last_reply}"

        def notices(user: str) -> list:
            # A notice mentions the message (its subject token) and comes from the filter, not the sender.
            return [m for m in self._find(user, sent.token) if "bob@example.org" not in str(m.get("From"))]

        until(lambda: bool(notices(MAIL_USER)), 40)
        everything = self._find(MAIL_USER, sent.token)
        raw = b"".join(m.as_bytes() for m in everything)
        assert mail.EICAR not in raw, "EICAR reached the recipient's mailbox as sent"
        assert notices(MAIL_USER), f"no notice for {sent.token} in /var/mail/{MAIL_USER}"
        assert until(lambda: bool(notices(ADMIN_USER)), 30), (
            f"administrator ({ADMIN_ADDRESS}) was not notified about {sent.token}"
        )
        assert _count_files(qdir) > before, f"quarantine {qdir} holds nothing new"
        return f"{sent.token}: not delivered as sent; recipient and admin notices; quarantined"

    def unprivileged(self) -> str:
        """Issue 11 acceptance, against the installed package: a local user with no business with
        the scanner (``nobody``) cannot reach aveserver's UNIX socket at all, and on the clamd TCP
        port an admin has opened, SHUTDOWN and RELOAD are refused and a FIFO or /dev/zero named in
        SCAN is answered with an error within a second; aveserver keeps answering and mail keeps
        flowing.  The admin's change is undone afterwards."""
        sb = self._sb()
        port = 3310
        conf = sb.path(CONF)
        original = conf.read_bytes()
        try:
            sb.run(["kavsetup", "config", "set", CONF, f"aveserver.options.ClamdTcpPort={port}"]).check()
            self._product_start(AVESERVER_UNIT, "restart")
            assert sb.wait_port(port, timeout=30), f"aveserver did not open its clamd port {port}"
            r = sb.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                        "python3", "-c", _UNPRIVILEGED_PROBE, str(port)], timeout=60)
            assert r.returncode == 0, f"unprivileged probe failed ({r.returncode}):\n{r.stdout}{r.stderr}"
            found = json.loads(r.stdout)
            assert found["socket"] == "PermissionError", f"nobody reached /run/aveserver: {found}"
            for cmd in ("SHUTDOWN", "RELOAD"):
                assert "Permission denied" in found[cmd], f"{cmd} over TCP by nobody: {found[cmd]!r}"
            for obj in ("fifo", "/dev/zero"):
                reply, took = found[obj]
                assert reply.endswith("ERROR") and took < 1.0, f"SCAN {obj}: {reply!r} after {took:.2f}s"
            assert found["PING"] == "PONG", f"aveserver stopped answering: {found}"
            assert self._aveserver_alive(), "aveserver died after the unprivileged requests"
            sent = self._deliver_clean(expect_header=True)
        finally:
            conf.write_bytes(original)
            self._product_start(AVESERVER_UNIT, "restart")
            until(lambda: sb.path("/run/aveserver").exists(), 30)
        return (f"nobody: socket refused; SHUTDOWN/RELOAD over TCP refused; FIFO {found['fifo'][1]:.2f}s, "
                f"/dev/zero {found['/dev/zero'][1]:.2f}s, both errors; {sent.token} delivered meanwhile")

    def queue(self) -> str:
        sb = self._sb()
        self._product_stop(AVESERVER_UNIT)
        if self._qmail:
            return self._queue_qmail()
        sent = mail.send(sb, mail.local(MAIL_USER))
        assert sent.accepted, f"MTA refused mail while aveserver was down: {sent.last_reply}"
        time.sleep(5)
        assert not mail.find(sb, MAIL_USER, sent.token), "delivered while aveserver was down (unscanned?)"
        queued = self._queued()
        assert queued >= 1, "message neither delivered nor in the MTA queue: lost"
        self._product_start(AVESERVER_UNIT)
        until(lambda: sb.path("/run/aveserver").exists(), 30)
        self._flush()
        got = mail.wait_for(sb, MAIL_USER, sent.token, 60)
        assert got, f"{sent.token} not delivered after aveserver restarted (queue: {self._queued()})"
        assert any(m.get("X-Anti-Virus") for m in got), "delivered after restart without X-Anti-Virus"
        return f"{sent.token} queued ({queued}) while aveserver was down, delivered after restart"

    def _queue_qmail(self) -> str:
        """qmail has no queue in front of qmail-queue: the caller (qmail-smtpd, so the SMTP client)
        keeps the mail when qmail-queue exits with a temporary code (qmail-queue(8): 51-81)."""
        sb = self._sb()
        sent = mail.qmail_send(sb, mail.local(MAIL_USER))
        assert 50 < sent.returncode < 90, (
            f"qmail-queue with aveserver down exited {sent.returncode}, not a temporary failure"
        )
        assert not mail.qmail_find(sb, MAIL_USER, sent.token), "queued unscanned while aveserver was down"
        self._product_start(AVESERVER_UNIT)
        until(lambda: sb.path("/run/aveserver").exists(), 30)
        again = self._deliver_clean(expect_header=True)
        return f"temporary failure ({sent.returncode}) while aveserver was down; {again.token} queued after restart"

    def dialogue(self) -> str:
        """Issue 16 acceptance: `kavsetup setup` on the matrix root, answered through pexpect on a
        real pseudo-terminal, ends with mail flowing through the filter."""
        import pexpect

        sb = self._sb()
        if sb.run(["kavsetup", "setup", "--help"]).returncode != 0:
            raise Blocked("kavsetup setup not in the package yet")
        sb.run(["kavsetup", "uninstall"]).check()
        argv = sb._enter(["kavsetup", "setup", "--save-answers", "/root/kav-setup.yaml"], {"TERM": "dumb"})
        child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=120, dimensions=(50, 300))
        replies = {"Protocol between": "smtp", "Administrator address": ADMIN_ADDRESS,
                   "Update the anti-virus databases now": "no", "Apply these changes": "yes"}
        asked: list[str] = []
        while child.expect([r"\n([^\n\[]+) \[[^\]\n]*\]: ", pexpect.EOF]) == 0:
            question = child.match.group(1).strip()
            asked.append(question)
            child.sendline(next((v for k, v in replies.items() if question.startswith(k)), ""))
        child.close()
        assert child.exitstatus == 0, f"kavsetup setup exited {child.exitstatus}:\n{child.before[-2000:]}"
        assert asked[-1].startswith("Apply these changes"), f"no confirmation asked: {asked}"
        conf = sb.path(CONF).read_text()
        assert "Protocol=smtp" in conf and f"AdminAddress={ADMIN_ADDRESS}" in conf, "answers not in the config"
        self._stop_mta()
        self._start_mta()
        sent = self._deliver_clean(expect_header=True)
        return f"{len(asked)} questions answered through a pty; {sent.token} delivered with X-Anti-Virus"

    def reconfigure(self) -> str:
        """Issue 16: the admin preseeds other ports and runs `dpkg-reconfigure`; postinst hands the
        seen debconf answers to `kavsetup reconfigure` (one journaled change); mail still flows.
        `remove` then checks the MTA configuration is the pre-install snapshot, byte for byte."""
        import json

        sb = self._sb()
        if sb.run(["kavsetup", "reconfigure", "--help"]).returncode != 0:
            raise Blocked("kavsetup reconfigure not in the package yet")
        port = 10125
        selections = (f"{PACKAGE} {PACKAGE}/filter_port string {port}\n"
                      f"{PACKAGE} {PACKAGE}/reinject_port string {port + 1}\n")
        sb.run(["debconf-set-selections"], input=selections.encode()).check()
        r = sb.run(["dpkg-reconfigure", "-f", "noninteractive", PACKAGE], timeout=300)
        assert r.returncode == 0, f"dpkg-reconfigure failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        main_cf = sb.path("/etc/postfix/main.cf").read_text()
        assert f"content_filter = kavscan:[127.0.0.1]:{port}" in main_cf, (
            f"dpkg-reconfigure did not move the filter to port {port}:\n{r.stderr[-2000:]}")
        journal = json.loads(sb.path("/var/lib/kav/5.5/kav4mailservers/journal/journal.json").read_text())
        assert journal["state"] == "installed" and "reconfigured_from" in journal, "not one journaled change"
        self._stop_mta()
        self._start_mta()
        sent = self._deliver_clean(expect_header=True)
        return f"filter moved to {port} by dpkg-reconfigure; {sent.token} delivered with X-Anti-Virus"

    def _strand_one(self) -> mail.Sent | None:
        """Issue 11 item 7: with the MTA running, aveserver down, a message waits in the queue for our
        transport (Postfix: its queue, content_filter; Exim and Sendmail: the listening instance's own
        spool); `dpkg -r` must get it delivered with no manual step."""
        kind = self.spec.flavour.kind
        if kind not in ("postfix", "exim", "sendmail") or not self.integrated or not self._has_initd(AVESERVER_UNIT):
            return None
        sb = self._sb()
        if kind == "postfix" and "mta" not in self.running:
            self._start_mta()
        elif kind != "postfix" and not all(u.name in self.running for u in self.mta_units):
            self._stop_mta()
            self._start_mta()
        self._product_stop(AVESERVER_UNIT)
        if "postfix_mode: proxy" in self.answers:
            # before the queue an SMTP client is told 4xx and keeps its mail; what waits in Postfix's
            # queue for our transport is a local submission (pickup's content_filter)
            sent = mail.Sent(self._sendmail(), 0, "250 sendmail(1)", "")
        else:
            sent = mail.send(sb, mail.local(MAIL_USER))
        assert sent.accepted, f"MTA refused mail while aveserver was down: {sent.last_reply}"
        assert until(lambda: self._queued() >= 1, 30) and not mail.find(sb, MAIL_USER, sent.token), (
            "the message was not deferred while aveserver was down")
        return sent

    def _sendmail(self) -> str:
        """A local submission through sendmail(1) (Postfix's pickup, no smtpd); its token."""
        tok = mail.token()
        r = self._sb().run(["/usr/sbin/sendmail", "-f", "bob@example.org", mail.local(MAIL_USER)],
                           input=f"Subject: local {tok}\n\nBody of {tok}\n".encode())
        assert r.returncode == 0, f"sendmail failed ({r.returncode}): {r.stderr.strip()[-300:]}"
        return tok

    def remove(self) -> str:
        sb = self._sb()
        stranded = self._strand_one()
        # Our daemons are left running for prerm to stop (issue 11); so is the MTA when a message
        # waits in its queue (the running MTA must be reloaded and the mail requeued by the package).
        if stranded is None:
            self._stop_all(keep_package_services=True)
        r = sb.run(["dpkg", "-r", PACKAGE], timeout=300)
        assert r.returncode == 0, f"dpkg -r failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        if stranded is not None:
            got = mail.wait_for(sb, MAIL_USER, stranded.token, 60)
            assert got, (f"{stranded.token} deferred while aveserver was down is still not delivered 60s after "
                         f"dpkg -r (queue: {self._queued()}):\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
            assert stranded.token in got[0].as_string(), "the deferred message was not delivered intact"
            self._stop_all(keep_package_services=True)
        self.running[:] = [n for n in self.running if not n.startswith("initd:")]
        until(lambda: not self._our_processes(), 20)
        left_procs = self._our_processes()
        assert not left_procs, "processes of ours left after dpkg -r:\n" + "\n".join(left_procs[:10])
        diff = snapshot.compare(self.config_before, snapshot.take(sb.root, self.spec.flavour.config_paths))
        assert not diff, "MTA configuration differs from the snapshot after dpkg -r:\n" + "\n".join(diff[:40])
        left_units = [u.name for u in self.mta_units if units.find(sb, u.name)]
        assert not left_units, f"kavsetup's MTA units left after dpkg -r: {left_units}"
        self.mta_units = []
        self._start_mta()
        try:
            sent = self._deliver_clean(expect_header=False)
        finally:
            self._stop_mta()
        detail = f"config identical ({len(self.config_before)} entries); {sent.token} delivered"
        if stranded is not None:
            detail += f"; {stranded.token}, deferred while aveserver was down, delivered after dpkg -r unaided"
        if not self.integrated:
            raise Partial(f"package removal only, integration was not installed\n{detail}")
        return detail

    def purge(self) -> str:
        sb = self._sb()
        r = sb.run(["dpkg", "--purge", PACKAGE], timeout=300)
        assert r.returncode == 0, f"dpkg --purge failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        left = sorted(self._tree() - self.tree_before)
        assert not left, "left behind after purge:\n" + "\n".join(left[:40])
        left_procs = self._our_processes()
        assert not left_procs, "processes of ours left after dpkg --purge:\n" + "\n".join(left_procs[:10])
        for what, db in (("kluser", "passwd"), ("filter", "group")):
            assert sb.run(["getent", db, what]).returncode != 0, f"{db} entry {what} left after purge"
        status = sb.run(["dpkg-query", "-W", "-f", "${Status}", PACKAGE])
        assert status.returncode != 0 or "not-installed" in status.stdout, f"dpkg still knows {PACKAGE}"
        detail = f"nothing left ({len(self.tree_before)} paths compared)"
        if not self.integrated:
            raise Partial(f"package purge only, integration was not installed\n{detail}")
        return detail


    def refuse(self) -> str:
        sb = self._sb()
        if self.deb is None or not self.deb.exists():
            raise Blocked("no .deb: run `make deb` (pkg/deb/build.sh)")
        # The admin already filters mail through something else (amavis, clamsmtp...).
        sb.run(["postconf", "-e", "content_filter=smtp:[127.0.0.1]:10024"]).check()
        before = snapshot.take(sb.root, self.spec.flavour.config_paths)
        tree = self._tree()
        shutil.copyfile(self.deb, sb.path("/tmp/kav4mailservers.deb"))
        r = sb.run(["dpkg", "-i", "/tmp/kav4mailservers.deb"], timeout=300)
        if sb.run(["kavsetup", "install", "--help"]).returncode != 0:
            raise Blocked("kavsetup install not available")
        assert r.returncode != 0, "postinst accepted a Postfix that already has another content_filter"
        assert "content_filter" in r.stderr, f"postinst failed without saying why:\n{r.stderr[-1500:]}"
        diff = snapshot.compare(before, snapshot.take(sb.root, self.spec.flavour.config_paths))
        assert not diff, "failed postinst changed the MTA configuration:\n" + "\n".join(diff[:30])
        p = sb.run(["dpkg", "--purge", PACKAGE], timeout=300)
        assert p.returncode == 0, f"dpkg --purge of the unconfigured package failed:\n{p.stdout}{p.stderr}"
        left = sorted(self._tree() - tree)
        assert not left, "left behind after purge:\n" + "\n".join(left[:40])
        reason = next(line.strip() for line in r.stderr.splitlines() if "content_filter" in line)
        return f"refused, config untouched, purge clean: {reason[:160]}"


    def proxy(self) -> str:
        """Issue 20: Postfix's before-queue form (``postfix_mode: proxy``, SMTPD_PROXY_README) end
        to end with a real client: installed by ``dpkg -i``, clean mail delivered with the header,
        EICAR handled as the actions say (and refused at the door with a 5xx when the admin's
        RecipientAction is reject), local submissions scanned too; with smtpscanner stopped the
        client hears a 4xx and nothing is accepted; after a restart mail flows; ``dpkg -r`` gives
        back main.cf and master.cf byte for byte."""
        sb = self._sb()
        self.answers = "postfix_mode: proxy\n"
        self.integrated, self.mta_units, self.running = False, [], []
        done = [self.baseline(), self.install()]
        master = sb.path("/etc/postfix/master.cf").read_text()
        assert "smtpd_proxy_filter=127.0.0.1:10025" in master, "master.cf has no smtpd_proxy_filter"
        main = sb.path("/etc/postfix/main.cf").read_text()
        assert not re.search(r"^content_filter\s*=", main, re.M), "proxy form set main.cf's content_filter"
        done += [self.clean(), self.eicar()]
        # sendmail(1) never meets smtpd: pickup hands it to the same daemon (content_filter)
        tok = self._sendmail()
        got = self._wait_for(MAIL_USER, tok, 40)
        assert got and any(m.get("X-Anti-Virus") for m in got), f"local submission {tok} not delivered scanned"
        done.append(f"sendmail {tok} delivered with X-Anti-Virus")
        # the admin asks for refusal: the client hears the 5xx itself, nothing is queued or bounced
        sb.run(["kavsetup", "config", "set", CONF, "smtpscan.group:default.RecipientAction=reject"]).check()
        self._product_start(SMTPSCANNER_UNIT, "restart")
        assert sb.wait_port(10025, timeout=30), "smtpscanner did not come back"
        sent = self._send(mail.local(MAIL_USER), attachment=mail.EICAR)
        assert sent.last_reply.startswith("5"), f"EICAR with RecipientAction=reject: {sent.last_reply!r}"
        assert until(lambda: self._queued() == 0, 30), "a refused message is in the queue"
        done.append(f"EICAR refused at the door: {sent.last_reply[:80]}")
        # filter down: Postfix's smtpd answers 4xx at the end of DATA; the client keeps the mail
        self._product_stop(SMTPSCANNER_UNIT)
        sent = self._send(mail.local(MAIL_USER))
        assert sent.last_reply.startswith("4") and not sent.accepted, f"smtpscanner down: {sent.last_reply!r}"
        queued = self._postfix_queued_to(mail.local(MAIL_USER))
        assert not queued, f"Postfix accepted (queued {queued}) mail while its before-queue filter was down"
        done.append(f"smtpscanner stopped: client got {sent.last_reply[:60]}, nothing queued")
        self._product_start(SMTPSCANNER_UNIT, "restart")
        assert sb.wait_port(10025, timeout=30), "smtpscanner did not come back"
        done.append(f"{self._deliver_clean(expect_header=True).token} delivered after restart")
        assert not self._find(MAIL_USER, sent.token), f"{sent.token}, answered 4xx, was delivered anyway"
        done.append(self.remove())
        return "; ".join(d.splitlines()[0] for d in done)


def _outcome(step: Callable[[], str], sb: Sandbox) -> Outcome:
    """Run one scenario step: its detail on success, its exception as blocked, partial or fail."""
    try:
        return Outcome("pass", 0.0, step())
    except Blocked as exc:
        return Outcome("blocked", 0.0, str(exc))
    except Partial as exc:
        return Outcome("partial", 0.0, str(exc))
    except (AssertionError, SandboxError, OSError, TimeoutError) as exc:
        return Outcome("fail", 0.0, f"{exc}\n{sb.log_tail(25)}")
    except Exception as exc:  # a bug in the harness is a failure too, with its trace
        return Outcome("fail", 0.0, f"{exc!r}\n{traceback.format_exc()}")


def _count_files(d: Path) -> int:
    """Quarantined objects: files, not counting dot-files (the store's own key and bookkeeping)."""
    return sum(1 for p in d.rglob("*") if p.is_file() and not p.name.startswith(".")) if d.exists() else 0
