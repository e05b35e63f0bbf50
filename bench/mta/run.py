#!/usr/bin/env python3
"""bench/mta: the filter as installed, end to end through a real Postfix (issue 20).

``python -m bench.mta`` (needs root: it uses the distro matrix's cached Debian root, overlay
mounts and namespaces; build the package first with ``make deb``).

For every contender a fresh overlay copy of the matrix's ``bookworm-postfix`` root is started in
its own network, PID and mount namespaces (tests/distro-matrix, testing.md). Inside it:

    smtp-source -> Postfix :25 -> content filter -> reinjection :10026 -> Postfix -> smtp-sink :2525

Contenders (same Postfix, same messages, same signature files):

* ``postfix``: no content filter at all: the ceiling.
* ``postfix null filter (after-queue)`` / ``postfix null proxy (before-queue)``: each form's wiring
  with nothing in the middle (Postfix talks straight to its own reinjection smtpd).  What Postfix
  itself spends on a filter of that form: no real filter of the form can be faster.
* ``kav daemon/lmtp``: our .deb installed with ``dpkg -i`` after its Recommends, as ``apt install``
  brings them by default (libhyperscan5: aveserver's Hyperscan prefilter; ``--no-recommends``
  measures without them); its postinst runs ``kavsetup install``
  with the installer's defaults (since issue 20 the daemon form: smtpscanner runs as its unit,
  listening on 127.0.0.1:10025; LMTP).
* ``kav spawn/lmtp``: the same with the answer ``postfix_mode: spawn`` (the guide's form: Postfix
  spawns ``smtpscanner --stdio`` per connection).
* ``kav proxy/smtp``: the answer ``postfix_mode: proxy``: Postfix's before-queue form
  (SMTPD_PROXY_README): the public smtpd hands each message to the standing smtpscanner before
  queueing it, and answers the client with what the reinjection smtpd answered; one queue pass.
* ``clamsmtp``: Debian's clamsmtpd + clamd, wired as clamsmtp's Postfix recipe (FILTER_README's
  after-queue content filter: ``scan`` smtp transport, reinjection smtpd with the overrides).
* ``amavisd-new``: Debian's amavisd-new + clamd, README.postfix's recipe (virus checks only).

The peers' daemons are the host's binaries joined to the sandbox's network namespace
(``nsenter -n``): all traffic stays on that namespace's loopback. aveserver loads the same
generated ``.hdb``/``.ndb`` that clamd loads (copied into the package's BasesPath).
Notifications are switched off and infected mail is removed/dropped by every contender.

Columns: messages/s from the first connection until Postfix's queue is empty (everything left
for smtp-sink); added latency = a probe message's time from MAIL FROM to arrival at a probe sink
(routed by Postfix like the load), minus the same figure without a filter at the same load;
CPU seconds per message over every process in the namespace (Postfix included; reaped children
counted); peak RSS summed over the filter's own processes (aveserver + smtpscanner, clamd +
clamsmtpd, clamd + amavisd).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distro-matrix"))

from distro_matrix import units  # noqa: E402
from distro_matrix.mta import CONTROLS  # noqa: E402
from distro_matrix.roots import ensure_root  # noqa: E402
from distro_matrix.sandbox import Sandbox  # noqa: E402
from distro_matrix.spec import FLAVOURS, RootSpec  # noqa: E402

from bench.filter.run import EICAR, make_message, signatures  # noqa: E402
from kavsetup.integrate.settings import IntegrationSettings  # noqa: E402

CONF = "/etc/kav/5.5/kav4mailservers/kav4mailservers.conf"
#: The installer's Postfix form (answered by nobody): what a Debian admin gets from ``dpkg -i``.
DEFAULT_MODE = IntegrationSettings().postfix_mode
ANSWERS = "/etc/kav/5.5/setup.yaml"
SUITE = "bookworm"  # the matrix root every contender runs in
MAXPROC = 10  # every contender's transport gets the same process limit (kavsetup's default maxproc)


# -- the namespace's processes ---------------------------------------------------------------------
def _netns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


class Meter:
    """Samples the processes of one network namespace: peak RSS of the filter's, CPU of all."""

    def __init__(self, init_pid: int, filter_names: tuple[str, ...]) -> None:
        self.ns = _netns(init_pid)
        self.names = filter_names
        self.peak = 0
        self._stop = threading.Event()
        self.cpu0 = self.cpu()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def procs(self) -> list[psutil.Process]:
        return [p for p in psutil.process_iter() if _netns(p.pid) == self.ns]

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for p in self.procs():
                try:
                    if any(n in " ".join(p.cmdline()) for n in self.names):
                        rss += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, rss)
            self._stop.wait(0.2)

    def stop(self) -> tuple[float, int]:
        self._stop.set()
        self._t.join()
        return self.cpu() - self.cpu0, self.peak


# -- Postfix, the same for everybody ---------------------------------------------------------------
def postconf(sb: Sandbox, *settings: str) -> None:
    sb.run(["postconf", "-e", *settings]).check()


def base_postfix(sb: Sandbox) -> None:
    """Relay everything not local to smtp-sink, probes to the probe sink; no TLS on loopback."""
    postconf(sb, "default_transport=smtp", "relay_transport=smtp", "relayhost=[127.0.0.1]:2525",
             "transport_maps=inline:{probe.test=smtp:[127.0.0.1]:2526}",
             "smtp_tls_security_level=none", "smtpd_tls_security_level=none",
             "smtpd_client_connection_count_limit=0", "smtpd_client_connection_rate_limit=0",
             "smtpd_client_message_rate_limit=0")


def start_postfix(sb: Sandbox) -> None:
    sb.spawn("sink", ["smtp-sink", "-u", "nobody", "127.0.0.1:2525", "1024"])
    CONTROLS["postfix"].start_in(sb)


def master_append(sb: Sandbox, text: str) -> None:
    path = sb.path("/etc/postfix/master.cf")
    path.write_text(path.read_text() + text)


REINJECT = (
    f"127.0.0.1:10026 inet n - n - {MAXPROC} smtpd\n"
    "  -o content_filter=\n"
    "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters\n"
    "  -o smtpd_helo_restrictions=\n  -o smtpd_client_restrictions=\n  -o smtpd_sender_restrictions=\n"
    "  -o smtpd_relay_restrictions=\n"
    "  -o smtpd_recipient_restrictions=permit_mynetworks,reject\n"
    "  -o mynetworks=127.0.0.0/8\n  -o smtpd_authorized_xforward_hosts=127.0.0.0/8\n"
)


# -- contenders ------------------------------------------------------------------------------------
class Contender:
    name = ""
    filter_names: tuple[str, ...] = ()

    def __init__(self, work: Path) -> None:
        self.work = work
        self.host_procs: list[subprocess.Popen[bytes]] = []

    def setup(self, sb: Sandbox) -> None:  # configure and start everything but Postfix
        pass

    def nsenter(self, sb: Sandbox, argv: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["nsenter", "-t", str(sb.init_pid), "-n", "--", *argv],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.host_procs.append(p)
        return p

    def teardown(self) -> None:
        for p in self.host_procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


class NoFilter(Contender):
    name = "postfix (no filter)"


class NullAfterQueue(Contender):
    """FILTER_README's after-queue wiring with nothing in the middle: the content_filter transport
    delivers straight to the reinjection smtpd.  Postfix's own cost of any after-queue filter (two
    queue passes, two SMTP hops) with a filter that costs nothing: the best any such form can do."""

    name = "postfix null filter (after-queue)"

    def setup(self, sb: Sandbox) -> None:
        postconf(sb, "content_filter=null:[127.0.0.1]:10026")
        master_append(sb, f"null unix - - n - {MAXPROC} smtp\n  -o smtp_send_xforward_command=yes\n" + REINJECT)


class NullProxy(Contender):
    """SMTPD_PROXY_README's before-queue wiring with nothing in the middle: the public smtpd proxies
    straight to the reinjection smtpd, with the options ``kavsetup``'s proxy form sets.  Postfix's
    own cost of any before-queue filter with a filter that costs nothing."""

    name = "postfix null proxy (before-queue)"

    def setup(self, sb: Sandbox) -> None:
        path = sb.path("/etc/postfix/master.cf")
        lines = path.read_text().splitlines(keepends=True)
        i = next(n for n, ln in enumerate(lines) if ln.split()[:2] == ["smtp", "inet"])
        lines[i + 1:i + 1] = ["  -o smtpd_proxy_filter=127.0.0.1:10026\n", "  -o smtpd_proxy_timeout=300s\n",
                              "  -o smtpd_proxy_options=speed_adjust\n"]
        # the reinjection smtpd with the default process limit, as kavsetup's proxy form has it
        path.write_text("".join(lines) + REINJECT.replace(f" {MAXPROC} smtpd", " - smtpd", 1))


def _installed(root: Path) -> set[str]:
    """Package names installed in ``root``, and the virtual names they provide."""
    out = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package}\t${Provides}\n"],
                         capture_output=True, text=True, check=True).stdout
    names: set[str] = set()
    for line in out.splitlines():
        pkg, _, provides = line.partition("\t")
        names.add(pkg)
        names.update(p.strip().split(" ")[0] for p in provides.split(",") if p.strip())
    return names


def recommended_debs(deb: Path, root: Path, suite: str) -> tuple[Path, ...]:
    """The package's Recommends as ``apt install`` brings them by default (APT::Install-Recommends):
    for each group not already satisfied in the root, its first alternative, from the project's
    cache of Debian packages (tests/support/debian_pkgs.py: fetched once per version)."""
    from tests.support.debian_pkgs import deb_file

    field = subprocess.run(["dpkg-deb", "-f", str(deb), "Recommends"], capture_output=True, text=True,
                           check=True).stdout
    have = _installed(root)
    out: list[Path] = []
    for group in filter(None, (g.strip() for g in field.split(","))):
        alts = [a.strip().split(" ")[0] for a in group.split("|")]
        if not any(a in have for a in alts):
            out.append(deb_file(alts[0], suite))
    return tuple(out)


class Kav(Contender):
    filter_names = ("aveserver", "smtpscanner")

    def __init__(self, work: Path, deb: Path, mode: str, protocol: str = "lmtp", extra: tuple[Path, ...] = (),
                 label: str = "") -> None:
        super().__init__(work)
        self.deb, self.mode, self.protocol, self.extra = deb, mode, protocol, extra
        self.name = f"kav {mode}/{protocol}{label}"

    def setup(self, sb: Sandbox) -> None:
        answers = sb.path(ANSWERS)
        answers.parent.mkdir(parents=True, exist_ok=True)
        text = "admin_address: kavadmin@mta.test\n"
        if self.mode != DEFAULT_MODE:  # the default is whatever kavsetup says; only deviations are answered
            text += f"postfix_mode: {self.mode}\n"
        if self.protocol != "lmtp":
            text += f"protocol: {self.protocol}\n"
        answers.write_text(text)
        if self.extra:  # the Recommends, and packages the admin added (e.g. python3-uvloop), installed first
            # numbered copies: the package cache names every file package.deb (tests/support/debian_pkgs.py)
            copies = [f"/tmp/extra{i}.deb" for i in range(len(self.extra))]
            for src, dst in zip(self.extra, copies, strict=True):
                shutil.copyfile(src, sb.path(dst))
            sb.run(["dpkg", "-i", *copies], timeout=600).check()
        shutil.copyfile(self.deb, sb.path("/tmp/kav.deb"))
        sb.run(["dpkg", "-i", "/tmp/kav.deb"], timeout=600).check()
        conf = sb.path(CONF).read_text()
        bases = next(line.split("=", 1)[1].strip() for line in conf.splitlines()
                     if line.strip().startswith("BasesPath"))
        for f in (self.work / "bases").iterdir():
            shutil.copyfile(f, sb.path(f"{bases}/{f.name}"))
        sb.run(["kavsetup", "config", "set", CONF, "smtpscan.group:default.AdminNotify=no",
                "smtpscan.group:default.RecipientNotify=no", "smtpscan.group:default.SenderNotify=no",
                "smtpscan.group:default.RecipientAttachReport=no",
                "smtpscan.group:default.RecipientAction=remove"]).check()
        wanted = ["kav4mailservers-aveserver.service"]
        listen = [line for line in sb.path(CONF).read_text().splitlines() if line.startswith("ListenAddress")]
        if listen and not listen[0].endswith("stdio"):
            wanted.append("kav4mailservers-smtpscanner.service")
        for name in wanted:
            path = units.find(sb, name)
            assert path is not None, f"{name} not installed"
            units.start(sb, units.load(path))
        deadline = time.monotonic() + 300
        while not sb.path("/run/aveserver").exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"aveserver did not start\n{sb.log_tail()}")
            time.sleep(0.2)
        if len(wanted) > 1 and not sb.wait_port(10025, timeout=120):
            raise SystemExit(f"smtpscanner did not listen\n{sb.log_tail()}")
        time.sleep(1)


def clamd_conf(work: Path) -> Path:
    (work / "clamtmp").mkdir(exist_ok=True)
    (work / "clamd.sock").unlink(missing_ok=True)
    conf = work / "clamd.conf"
    conf.write_text(f"Foreground yes\nLocalSocket {work / 'clamd.sock'}\nDatabaseDirectory {work / 'bases'}\n"
                    f"TemporaryDirectory {work / 'clamtmp'}\nLogFile {work / 'clamd.log'}\nMaxThreads 20\nUser root\n")
    return conf


def wait_unix(path: Path, timeout: float = 180) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as s:
            if s.connect_ex(str(path)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{path} did not open")


class ClamSMTP(Contender):
    name = "clamsmtp"
    filter_names = ("clamd", "clamsmtpd")

    def setup(self, sb: Sandbox) -> None:
        self.nsenter(sb, ["clamd", "-c", str(clamd_conf(self.work))])
        wait_unix(self.work / "clamd.sock")
        (self.work / "clamsmtpd.conf").write_text(
            f"OutAddress: 127.0.0.1:10026\nListen: 127.0.0.1:10025\nClamAddress: {self.work / 'clamd.sock'}\n"
            f"TempDirectory: {self.work / 'clamtmp'}\nPidFile: {self.work / 'clamsmtpd.pid'}\nMaxConnections: 128\n")
        self.nsenter(sb, ["clamsmtpd", "-d", "1", "-f", str(self.work / "clamsmtpd.conf")])
        if not sb.wait_port(10025):
            raise SystemExit("clamsmtpd did not listen")
        postconf(sb, "content_filter=scan:[127.0.0.1]:10025")
        master_append(sb, f"scan unix - - n - {MAXPROC} smtp\n  -o smtp_send_xforward_command=yes\n"
                          "  -o smtp_enable_xforward=yes\n" + REINJECT)


class Amavis(Contender):
    name = "amavisd-new"
    filter_names = ("clamd", "amavisd")

    def setup(self, sb: Sandbox) -> None:
        import pwd

        self.nsenter(sb, ["clamd", "-c", str(clamd_conf(self.work))])
        wait_unix(self.work / "clamd.sock")
        home = self.work / "amavis"
        user = pwd.getpwnam("amavis")
        for d in (home, home / "tmp", home / "db", home / "var"):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, user.pw_uid, user.pw_gid)
        conf = self.work / "amavisd.conf"
        conf.write_text(f"""use strict;
$MYHOME = '{home}'; $TEMPBASE = "$MYHOME/tmp"; $db_home = "$MYHOME/db";
$pid_file = "$MYHOME/var/amavisd.pid"; $lock_file = "$MYHOME/var/amavisd.lock";
$daemon_user = 'amavis'; $daemon_group = 'amavis';
$myhostname = 'mta.test'; $mydomain = 'mta.test';
$inet_socket_bind = '127.0.0.1'; $inet_socket_port = 10024;
$forward_method = 'smtp:[127.0.0.1]:10026'; $notify_method = $forward_method;
$max_servers = {MAXPROC}; $enable_db = 0; $enable_zmq = 0; $do_syslog = 0;
$LOGFILE = "$MYHOME/amavis.log"; $log_level = 0;
@bypass_spam_checks_maps = (1); @bypass_banned_checks_maps = (1); @bypass_header_checks_maps = (1);
$final_virus_destiny = D_DISCARD; $virus_admin = undef; $warnvirusrecip = 0;
$enable_dkim_verification = 0;
@av_scanners = (['ClamAV-clamd', \\&ask_daemon, ["CONTSCAN {{}}\\n", "{self.work / 'clamd.sock'}"],
  qr/\\bOK$/m, qr/\\bFOUND$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND$/m ]);
@av_scanners_backup = ();
1;
""")
        self.nsenter(sb, ["amavisd", "-c", str(conf), "foreground"])
        if not sb.wait_port(10024, timeout=120):
            raise SystemExit("amavisd did not listen")
        postconf(sb, "content_filter=smtp-amavis:[127.0.0.1]:10024")
        master_append(sb, f"smtp-amavis unix - - n - {MAXPROC} smtp\n  -o smtp_data_done_timeout=1200\n"
                          "  -o smtp_send_xforward_command=yes\n  -o disable_dns_lookups=yes\n  -o max_use=20\n"
                          + REINJECT)


# -- one run -------------------------------------------------------------------------------------
def drive(sb: Sandbox, work: Path, sessions: int, messages: int, probes: int) -> dict:
    argv = ["nsenter", "-t", str(sb.init_pid), "-n", "--", sys.executable, "-m", "bench.mta.driver",
            "--spool", str(sb.path("/var/spool/postfix")), "--clean", str(work / "clean.eml"),
            "--eicar", str(work / "eicar.eml"), "--sessions", str(sessions), "--messages", str(messages),
            "--probes", str(probes)]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=900,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    if out.returncode != 0:
        raise SystemExit(f"driver failed: {out.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


Row = dict[str, float]


def run_contender(c: Contender, root: Path, work: Path, levels: list[int], messages: int,
                  log: Callable[[str], None]) -> dict[int, Row]:
    rows: dict[int, Row] = {}
    with Sandbox(root, name="bench") as sb:
        try:
            base_postfix(sb)
            c.setup(sb)
            start_postfix(sb)
            drive(sb, work, 2, 20, 0)  # warm-up: connections, caches, spawned processes
            idle = drive(sb, work, 1, 0, 40)["latency"]  # one session, no load: the probe alone
            rows[0] = {"rate": float("nan"), "p50": pct(idle, 0.5), "p99": pct(idle, 0.99), "cpu": float("nan"),
                       "rss": float("nan"), "errors": 0, "deferred": 0, "left": 0}
            log(f"{c.name:20s} idle probe p50 {rows[0]['p50'] * 1000:7.1f} ms p99 {rows[0]['p99'] * 1000:7.1f} ms")
            for lvl in levels:
                meter = Meter(sb.init_pid, c.filter_names)
                r = drive(sb, work, lvl, messages, 40)
                cpu, peak = meter.stop()
                lat = r["latency"]
                rows[lvl] = {"rate": r["messages"] / r["elapsed"], "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                             "cpu": cpu / r["messages"], "rss": peak / 2**20, "errors": r["errors"],
                             "deferred": r["deferred"], "left": r["left"]}
                log(f"{c.name:20s} c={lvl:<3d} {rows[lvl]['rate']:7.1f} msg/s  probe p50 {rows[lvl]['p50'] * 1000:7.1f}"
                    f" ms p99 {rows[lvl]['p99'] * 1000:7.1f} ms  CPU {rows[lvl]['cpu'] * 1000:6.2f} ms/msg  "
                    f"RSS {rows[lvl]['rss']:6.1f} MiB  errors {r['errors']} deferred {r['deferred']}"
                    + (f" [{r['error_text'][:200]!r}]" if r["errors"] else ""))
        finally:
            if os.environ.get("BENCH_DEBUG"):
                print(sb.log_tail(20), file=sys.stderr)
            syslog = sb.path("/var/log/matrix-syslog")
            if syslog.exists():  # say why mail was deferred (a 4xx is not a loss, but it is a cost)
                for line in syslog.read_text(errors="replace").splitlines():
                    if "status=deferred" in line or "status=bounced" in line:
                        log(f"{c.name}: {line[-300:]}")
            CONTROLS["postfix"].stop_in(sb)
            c.teardown()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,5,20")
    ap.add_argument("--messages", type=int, default=400, help="messages per contender and level")
    ap.add_argument("--only", action="append", help="contender name prefix (repeatable)")
    ap.add_argument("--deb", type=Path, help="package (default: newest dist/kav4mailservers_*_all.deb)")
    ap.add_argument("--with-debs", type=Path, action="append", default=[], metavar="DEB",
                    help="also run the default form with these Debian packages installed first (repeatable; "
                         "e.g. python3-uvloop and libuv1 from `apt-get download`)")
    ap.add_argument("--no-recommends", action="store_true",
                    help="install the package with its Depends only (`dpkg -i`, `--no-install-recommends`): "
                         "without libhyperscan5 aveserver scans with the slower Aho-Corasick prefilter")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.mta needs root (overlay mounts, namespaces), as the distro matrix does")
    deb = args.deb or max((REPO / "dist").glob("kav4mailservers_*_all.deb"), key=lambda p: p.stat().st_mtime,
                          default=None)
    if deb is None:
        raise SystemExit("no package: run `make deb` first")
    levels = [int(x) for x in args.levels.split(",")]
    root, _ = ensure_root(RootSpec(SUITE, FLAVOURS["postfix"]))
    work = Path(tempfile.mkdtemp(prefix="bench-mta."))
    os.chmod(work, 0o755)  # noqa: S103 - amavis and clamd read from here
    import random

    rnd = random.Random(1)
    attach = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz \n") for _ in range(6500))
    (work / "clean.eml").write_bytes(make_message(attach, "report.txt", "clean"))
    (work / "eicar.eml").write_bytes(make_message(EICAR, "eicar.com", "eicar"))
    signatures(work / "bases")
    rec = () if args.no_recommends else recommended_debs(deb, root, SUITE)
    label = " (no Recommends)" if args.no_recommends else ""
    print(f"package: {deb.name}; installed with its Recommends: {', '.join(p.parent.name for p in rec) or 'none'}",
          flush=True)
    contenders: list[Contender] = [NoFilter(work), NullAfterQueue(work), NullProxy(work),
                                   Kav(work, deb, "daemon", extra=rec, label=label),
                                   Kav(work, deb, "spawn", extra=rec, label=label),
                                   Kav(work, deb, "proxy", "smtp", extra=rec, label=label), ClamSMTP(work)]
    if args.with_debs:
        at = next(i for i, c in enumerate(contenders) if isinstance(c, Kav)) + 1  # beside the default
        contenders.insert(at, Kav(work, deb, DEFAULT_MODE, extra=(*rec, *(p.resolve() for p in args.with_debs)),
                                  label=" +" + "+".join(p.name.split("_")[0] for p in args.with_debs)))
    if shutil.which("amavisd"):
        contenders.append(Amavis(work))
    else:
        print("amavisd-new not installed: skipped (apt-get install amavisd-new)", file=sys.stderr)
    results: dict[str, dict[int, Row]] = {}
    try:
        for c in contenders:
            if args.only and not any(c.name.startswith(o) for o in args.only):
                continue
            results[c.name] = run_contender(c, root, work, levels, args.messages, lambda s: print(s, flush=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, levels)
    return 0


def report(results: dict[str, dict[int, Row]], levels: list[int]) -> None:
    ceiling = results.get("postfix (no filter)", {})
    print("\n| contender | sessions | msgs/s | added p50 ms | added p99 ms | CPU ms/msg | filter peak RSS MiB "
          "| errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for lvl, r in rows.items():
            b = ceiling.get(lvl)
            a50 = (r["p50"] - b["p50"]) * 1000 if b else float("nan")
            a99 = (r["p99"] - b["p99"]) * 1000 if b else float("nan")
            if name == "postfix (no filter)":
                a50, a99 = r["p50"] * 1000, r["p99"] * 1000  # the ceiling row shows its own (absolute) latency
            print(f"| {name} | {lvl or '1, no load'} | {r['rate']:.1f} | {a50:.1f} | {a99:.1f} | "
                  f"{r['cpu'] * 1000:.2f} | {r['rss']:.1f} | {int(r['errors'] + r['deferred'])} |")
    print("(postfix (no filter) row: absolute probe latency, not added)")
    best = {n: max(r["rate"] for lvl, r in rows.items() if lvl) for n, rows in results.items()}
    kav = {n: v for n, v in best.items() if n.startswith("kav")}
    if not kav:
        return
    top = max(kav, key=kav.__getitem__)
    print(f"\nbest form: {top} {kav[top]:.1f} msgs/s")
    for peer, goal in (("clamsmtp", 5.0), ("amavisd-new", 20.0)):
        if peer in best:
            ratio = kav[top] / best[peer]
            print(f"best vs best {peer}: {ratio:.2f}x (goal >= {goal:g}x: {'met' if ratio >= goal else 'missed'})")
    if "postfix (no filter)" in best:
        share = kav[top] / best["postfix (no filter)"]
        print(f"share of the no-filter ceiling: {share:.0%} (goal >= 50 %: {'met' if share >= 0.5 else 'missed'})")
        for null in ("postfix null filter (after-queue)", "postfix null proxy (before-queue)"):
            if null in best:  # the same wiring with a filter that costs nothing: what any filter can reach
                print(f"{null}: {best[null] / best['postfix (no filter)']:.0%} of the ceiling")
    default = next((n for n in kav if n.startswith(f"kav {DEFAULT_MODE}/lmtp") and "+" not in n), "")
    if default in kav:
        rel = kav[default] / kav[top]
        verdict = "met" if rel >= 0.8 else "missed"
        print(f"default form ({default}) vs best: {rel:.0%} (goal >= 80 %: {verdict})")
    if 0 in ceiling:
        for n in results:
            if n.startswith("postfix null") and 0 in results[n]:
                print(f"{n}: p50 added at one session (no load) "
                      f"{(results[n][0]['p50'] - ceiling[0]['p50']) * 1000:.1f} ms")
        for n in kav:
            if 0 in results[n]:
                added = (results[n][0]["p50"] - ceiling[0]["p50"]) * 1000
                print(f"{n}: p50 added at one session (no load) {added:.1f} ms (goal < 3 ms: "
                      f"{'met' if added < 3 else 'missed'})")


if __name__ == "__main__":
    sys.exit(main())
