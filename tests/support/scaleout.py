"""The scale-out recipe of docs/scale-out.md with real parts: one MX host, two filter hosts, a LAN.

``run_in_namespace(spec)`` re-runs this module under ``unshare --net``. That private network
namespace is the LAN: a bridge with 10.99.0.254, where this process plays both the Internet
client (the load driver) and the mail store (an SMTP sink, :class:`tests.support.filter.Sink`).
Every host is a distro-matrix :class:`Sandbox` (an overlay copy of the cached bookworm-postfix
root in namespaces of its own, testing.md) joined to the bridge by a veth pair::

    driver --SMTP--> mx 10.99.0.1:25   real Postfix (the root's), content_filter=scan:[filters.lan]:10025
                                       with filters.lan = 10.99.0.11 and 10.99.0.12 (two A records)
                     filter1 10.99.0.11:10025 / filter2 10.99.0.12:10025
                                       smtpscanner + aveserver from this tree (the host's python joined
                                       to the host's network namespace with nsenter -n, as bench/mta
                                       runs its peers); ForwardMailer=smtp:10.99.0.1:10026
                     mx 10.99.0.1:10026 reinjection listener (only the filter hosts may use it)
                     --> store 10.99.0.254:2525 (the sink: every Message-ID is counted here)
    mx 10.99.0.1:3310  Debian's HAProxy (the host's binary in the MX's network namespace), pooling the
                       filter hosts' aveserver clamd TCP ports 10.99.0.1x:3310 with health checks

Killing a filter host is what a power cut does: every process of it gets SIGKILL, then its
namespace (and with it its veth, so its address stops answering ARP) is torn down.

It prints one JSON object (counts per Message-ID, per filter host, the pool's scans); the test
(tests/scaleout) asserts on it and ``python -m bench.scaleout`` turns it into throughput figures.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distro-matrix"))

from distro_matrix.mta import CONTROLS  # noqa: E402
from distro_matrix.roots import ensure_root, is_cached  # noqa: E402
from distro_matrix.sandbox import Sandbox  # noqa: E402
from distro_matrix.spec import FLAVOURS, RootSpec  # noqa: E402

from tests.support.filter import EICAR, Sink, ini  # noqa: E402
from tests.support.procs import can_connect, wait_for  # noqa: E402

BRIDGE = "kso0"
NET = "10.99.0"
STORE = f"{NET}.254"
MX = f"{NET}.1"
FILTERS = {"filter1": f"{NET}.11", "filter2": f"{NET}.12"}
FILTER_NAME = "filters.lan"
SCAN_PORT = 10025
REINJECT_PORT = 10026
CLAMD_PORT = 3310
STORE_PORT = 2525
DOMAIN = "dest.test"
SCAN_MAXPROC = 20
# smtpscanner keeps up to 16 idle connections to its ForwardMailer (runtime/filter/forward.py): the
# reinjection listener needs a process for each of every filter host's, or one host's idle pool
# starves the other's forwards
REINJECT_MAXPROC = 60
ROOT_SPEC = RootSpec("bookworm", FLAVOURS["postfix"])


# -- the recipe's configuration text (docs/scale-out.md shows the same lines) ----------------------
def mx_main_cf(filters: list[str]) -> list[str]:
    """main.cf settings of the MX host (postconf -e arguments)."""
    return [
        "inet_interfaces=all", "inet_protocols=ipv4", "mydestination=localhost",
        f"mynetworks=127.0.0.0/8 {NET}.0/24", f"relay_domains={DOMAIN}",
        f"transport_maps=inline:{{{DOMAIN}=smtp:[{STORE}]:{STORE_PORT}}}",
        f"content_filter=scan:[{FILTER_NAME}]:{SCAN_PORT}",
        "smtp_tls_security_level=none", "smtpd_tls_security_level=none",
        "smtpd_client_connection_count_limit=0", "smtpd_client_connection_rate_limit=0",
        "smtpd_client_message_rate_limit=0",
        # lab only: retry deferred mail within seconds instead of Postfix's 300 s minimum
        "queue_run_delay=5s", "minimal_backoff_time=5s", "maximal_backoff_time=10s",
    ]  # fmt: skip


def mx_master_cf(filters: list[str]) -> str:
    """The two master.cf services of the MX host: the scan client and the reinjection listener."""
    allowed = ",".join(filters)
    return (
        f"scan      unix  -       -       n       -       {SCAN_MAXPROC}      smtp\n"
        "  -o smtp_host_lookup=native\n"
        "  -o smtp_connect_timeout=5s\n"
        "  -o smtp_send_xforward_command=yes\n"
        "  -o disable_mime_output_conversion=yes\n"
        f"{MX}:{REINJECT_PORT} inet  n       -       n       -       {REINJECT_MAXPROC}      smtpd\n"
        "  -o content_filter=\n"
        "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters\n"
        "  -o smtpd_helo_restrictions=\n  -o smtpd_client_restrictions=\n  -o smtpd_sender_restrictions=\n"
        "  -o smtpd_relay_restrictions=\n"
        "  -o smtpd_recipient_restrictions=permit_mynetworks,reject\n"
        f"  -o mynetworks={allowed}\n"
        f"  -o smtpd_authorized_xforward_hosts={allowed}\n"
    )


def mx_hosts(filters: list[str]) -> str:
    """/etc/hosts lines on the MX: one name, one address per filter host (DNS A records work alike)."""
    return "".join(f"{addr} {FILTER_NAME}\n" for addr in filters)


def filter_conf(base: Path, addr: str) -> str:
    """kav4mailservers.conf of one filter host (scratch paths; the package's defaults otherwise)."""
    return ini({
        "path": {"BasesPath": base / "bases", "LocalSocketPath": base / "run" / "aveserver",
                 "AVSpidPATH": base / "run" / "aveserver.pid", "TempPath": base / "spool",
                 "CachePath": base / "cache"},
        "aveserver.options": {"DetachFromTerminal": False, "Workers": 1, "User": "root",
                              "ClamdTcpAddress": addr, "ClamdTcpPort": CLAMD_PORT},
        "aveserver.report": {"ReportFileName": base / "log" / "aveserver.log"},
        "smtpscan.general": {"Protocol": "smtp", "ListenAddress": f"inet:{addr}:{SCAN_PORT}",
                             "ForwardMailer": f"smtp:{MX}:{REINJECT_PORT}",
                             "NotifyFromAddress": "kav@mx.lan"},
        "smtpscan.report": {"ReportFileName": base / "log" / "smtpscanner.log"},
        "smtpscan.group:default": {"AdminNotify": False, "RecipientNotify": False, "SenderNotify": False,
                                   "RecipientAttachReport": False, "RecipientAction": "remove"},
    })


def haproxy_cfg(filters: dict[str, str], stats: Path) -> str:
    servers = "".join(f"    server {name} {addr}:{CLAMD_PORT} check inter 1s fall 2 rise 2\n"
                      for name, addr in filters.items())
    return f"""global
    maxconn 512
    stats socket {stats} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch

frontend clamd
    bind {MX}:{CLAMD_PORT}
    default_backend aveservers

backend aveservers
    balance leastconn
    option tcp-check
    tcp-check send PING\\n
    tcp-check expect string PONG
{servers}"""


# -- the lab ------------------------------------------------------------------------------------------
def _ip(*argv: str, pid: int | None = None) -> None:
    prefix = ["nsenter", "-t", str(pid), "-n", "--"] if pid else []
    proc = subprocess.run([*prefix, "ip", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {proc.stderr.strip()}")


class Lab:
    """The LAN (this namespace's bridge) and its hosts; closing it leaves nothing behind."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root, self.work = root, work
        self.hosts: dict[str, Sandbox] = {}
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {}

    def __enter__(self) -> Lab:
        _ip("link", "set", "lo", "up")
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{STORE}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        return self

    def __exit__(self, *exc: object) -> None:
        for name in list(self.hosts):
            self.kill(name)

    def host(self, name: str, addr: str) -> Sandbox:
        sb = Sandbox(self.root, name=f"so-{name}").__enter__()
        self.hosts[name], self.procs[name] = sb, []
        veth = f"kso-{name}"[:15]
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(sb.init_pid))
        _ip("link", "set", veth, "master", BRIDGE, "up")
        _ip("addr", "add", f"{addr}/24", "dev", "eth0", pid=sb.init_pid)
        _ip("link", "set", "eth0", "up", pid=sb.init_pid)
        return sb

    def spawn(self, host: str, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """A process of the host's own (the host's binaries and this tree, in the host's network)."""
        sb = self.hosts[host]
        with open(self.work / f"{host}-{name}.log", "ab") as out:
            self.procs[host].append(subprocess.Popen(
                ["nsenter", "-t", str(sb.init_pid), "-n", "--", *argv], env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT))

    def kill(self, host: str) -> None:
        """Pull the plug: SIGKILL every process of the host, then tear its namespaces (and link) down."""
        procs = self.procs.pop(host, [])
        pids = [pid for proc in reversed(procs) for pid in _tree(proc.pid)]  # all at once, newest first
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in procs:
            proc.wait()
        sb = self.hosts.pop(host, None)
        if sb is not None:
            if host == "mx":
                CONTROLS["postfix"].stop_in(sb)
            sb.close()


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        p = psutil.Process(pid)
        return [c.pid for c in p.children(recursive=True)] + [pid]
    except psutil.Error:
        return [pid]


def start_filter(lab: Lab, name: str, addr: str, bases: Path) -> None:
    base = lab.work / name
    for d in ("run", "log", "spool", "bases", "cache"):
        (base / d).mkdir(parents=True, exist_ok=True)
    for f in bases.iterdir():
        shutil.copyfile(f, base / "bases" / f.name)
    conf = base / "kav4mailservers.conf"
    conf.write_text(filter_conf(base, addr))
    lab.host(name, addr)
    env = dict(os.environ, PYTHONPATH=str(REPO), KAV_ENGINE_CACHE=str(lab.work / "engine-cache"))
    lab.spawn(name, "aveserver", [sys.executable, "-m", "runtime.engine.server", "-c", str(conf), "-f"], env)
    wait_for(lambda: can_connect((addr, CLAMD_PORT)), timeout=180, what=f"aveserver on {name}")
    lab.spawn(name, "smtpscanner", [sys.executable, "-m", "runtime.filter.main", "-c", str(conf), "--daemon"], env)
    wait_for(lambda: can_connect((addr, SCAN_PORT)), timeout=60, what=f"smtpscanner on {name}")


def start_mx(lab: Lab, filters: dict[str, str], haproxy: bool) -> Sandbox:
    """The MX host; without filters it is the same Postfix with no content filter (the bench's ceiling)."""
    sb = lab.host("mx", MX)
    addrs = list(filters.values())
    settings = mx_main_cf(addrs)
    if not addrs:
        settings = [s for s in settings if not s.startswith("content_filter=")]
    sb.run(["postconf", "-e", *settings]).check()
    if addrs:
        master = sb.path("/etc/postfix/master.cf")
        master.write_text(master.read_text() + mx_master_cf(addrs))
        hosts = sb.path("/etc/hosts")
        hosts.write_text(hosts.read_text() + mx_hosts(addrs))
    CONTROLS["postfix"].start_in(sb)
    wait_for(lambda: can_connect((MX, 25)) and (not addrs or can_connect((MX, REINJECT_PORT))), timeout=30,
             what="Postfix on mx")
    if haproxy:
        cfg = lab.work / "haproxy.cfg"
        cfg.write_text(haproxy_cfg(filters, lab.work / "haproxy.sock"))
        lab.spawn("mx", "haproxy", ["haproxy", "-db", "-f", str(cfg)])
        wait_for(lambda: can_connect((MX, CLAMD_PORT)), timeout=30, what="haproxy on mx")
    return sb


# -- load, pool, counting --------------------------------------------------------------------------
def message(i: int, infected: bool, run: str, rnd: random.Random, big: bool = False) -> tuple[str, str, bytes]:
    """(Message-ID, recipient, bytes): ~8 KB with an attachment, the EICAR test file when infected.
    ``big``: an attachment past smtpscanner's in-memory limit, so the filter host spools it to its
    TempPath while it holds it (what :func:`kill_with_mail_inside` watches for)."""
    from runtime.filter.spool import IN_MEMORY

    mid = f"<so-{run}-{i}@client.lan>"
    if big and not infected:
        payload = rnd.randbytes(IN_MEMORY)
    else:
        text = "".join(rnd.choice("abcdefghij klmnopqrstuvwxyz\n") for _ in range(6000))
        payload = EICAR if infected else text.encode()
    b64 = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    rcpt = f"user{i % 7}@{DOMAIN}"
    data = (f"From: load@client.lan\r\nTo: {rcpt}\r\nSubject: scale-out {i}\r\n"
            f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
            f"message {i}\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
            f'Content-Disposition: attachment; filename="{"eicar.com" if infected else "data.txt"}"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n{b64}--b1--\r\n")
    return mid, rcpt, data.encode()


def drive(msgs: list[tuple[str, str, bytes]], concurrency: int, accepted: list[str], refused: list[str]) -> None:
    """Send every message to the MX like concurrent Internet clients; 10 messages per connection."""
    work: queue.Queue[tuple[str, str, bytes]] = queue.Queue()
    for m in msgs:
        work.put(m)
    lock = threading.Lock()

    def client() -> None:
        while not work.empty():
            try:
                with smtplib.SMTP(MX, 25, timeout=120) as c:
                    for _ in range(10):
                        try:
                            mid, rcpt, data = work.get_nowait()
                        except queue.Empty:
                            return
                        try:
                            c.sendmail("load@client.lan", [rcpt], data)
                            with lock:
                                accepted.append(mid)
                        except smtplib.SMTPException:
                            with lock:
                                refused.append(mid)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.2)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def clamd_instream(addr: str, port: int, data: bytes, timeout: float = 30) -> str:
    """One clamd INSTREAM scan (the protocol clamdscan --stream and clamav-milter speak)."""
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.sendall(b"zINSTREAM\0" + len(data).to_bytes(4, "big") + data + b"\0\0\0\0")
        reply = b""
        while not reply.endswith(b"\0"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.rstrip(b"\0").decode(errors="replace")


def haproxy_servers(stats: Path) -> dict[str, dict[str, str]]:
    """HAProxy's view of each backend server: status (UP/DOWN) and stot (sessions it served)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(stats))
        s.sendall(b"show stat\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    lines = out.decode().strip().splitlines()
    head = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(head, line.split(","), strict=False)) for line in lines[1:]]
    return {r["svname"]: {"status": r["status"], "stot": r["stot"]}
            for r in rows if r["pxname"] == "aveservers" and r["svname"] not in ("BACKEND", "FRONTEND")}


def pool_scans(n: int, errors: list[str], found: list[str]) -> None:
    for i in range(n):
        data = EICAR if i % 2 == 0 else b"clean object %d\n" % i
        try:
            reply = clamd_instream(MX, CLAMD_PORT, data)
        except OSError as exc:
            errors.append(repr(exc))
            continue
        ok = reply.endswith("FOUND") if data == EICAR else reply.endswith(": OK")
        (found if ok else errors).append(reply)


def drain(sink: Sink, accepted: list[str], mx: Sandbox, timeout: float, flush: bool = True) -> bool:
    """Wait until every accepted Message-ID reached the store; True when they all did.
    ``flush``: every 10 s ``postqueue -f``, as an admin would; without it Postfix's own retries only."""
    deadline = time.monotonic() + timeout
    flushed = time.monotonic()
    while time.monotonic() < deadline:
        if set(accepted) <= {_mid(g.data) for g in sink.got}:
            return True
        if flush and time.monotonic() - flushed > 10:
            CONTROLS["postfix"].flush(mx)  # what an admin does after repairing a host
            flushed = time.monotonic()
        time.sleep(0.2)
    return False


def outage(lab: Lab, mx: Sandbox, sink: Sink, hosts: dict[str, str], bases: Path, concurrency: int, run_id: str,
           rnd: random.Random, accepted: list[str]) -> dict:
    """Every filter host down: new mail is accepted and waits in the MX's queue (never bounced);
    once the hosts are back it flows without anybody touching the MX."""
    for name in hosts:
        lab.kill(name)
    msgs = [message(100000 + i, False, run_id, rnd) for i in range(20)]
    got_before = len(sink.got)
    mine: list[str] = []
    refused: list[str] = []
    drive(msgs, concurrency, mine, refused)
    time.sleep(8)  # more than smtp_connect_timeout and a queue run: every delivery tried at least once
    queued = CONTROLS["postfix"].queued(mx)
    arrived_while_down = len(sink.got) - got_before
    for name, addr in hosts.items():
        start_filter(lab, name, addr, bases)
    accepted.extend(mine)
    back = time.monotonic()
    delivered = drain(sink, mine, mx, 120, flush=False)
    return {"sent": len(msgs), "accepted": len(mine), "refused": refused, "queued_while_down": queued,
            "arrived_while_down": arrived_while_down, "delivered_after": delivered,
            "seconds_after_return": round(time.monotonic() - back, 1)}


def kill_with_mail_inside(lab: Lab, host: str, patience: float = 60) -> int:
    """Kill ``host`` at a moment when it holds messages it has read but not yet answered (its
    TempPath spool is not empty): the worst moment for the MX. Returns how many it held.

    The host's aveserver is frozen (SIGSTOP) first, so every message its smtpscanner reads from then
    on stays read and unanswered until the plug is pulled.  Watching for a spool file that only lives
    while a message is scanned and forwarded lost the race about once in eight runs: this thread
    shares the GIL with the load's clients and the mail store, and a few milliseconds are enough."""
    spool = lab.work / host / "spool"
    for pid in _tree(lab.procs[host][0].pid):  # the host's first process: its aveserver
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + patience
    held = 0
    while time.monotonic() < deadline:
        held = len(os.listdir(spool))
        if held:
            break
        time.sleep(0.01)
    lab.kill(host)
    return held


def pool_load(n: int, concurrency: int, size: int = 256 * 1024) -> dict:
    """``n`` INSTREAM scans of a ``size``-byte object through the pool from ``concurrency`` clients."""
    blob = random.Random(3).randbytes(size)
    todo = list(range(n))
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            try:
                reply = clamd_instream(MX, CLAMD_PORT, blob, timeout=120)
                if not reply.endswith(": OK"):
                    errors.append(reply)
            except OSError as exc:
                errors.append(repr(exc))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    return {"scans": n, "seconds": took, "rate": n / took, "errors": errors[:5], "error_count": len(errors)}


def filter_host_of(data: bytes) -> str:
    """Which filter host handed the message back: the reinjection listener's Received line names it."""
    for name, addr in FILTERS.items():
        if re.search(rb"^Received: from \S+ \(\S* ?\[" + re.escape(addr.encode()) + rb"\]", data, re.M):
            return name
    return "?"


def run(spec: dict) -> dict:
    """The whole scenario; spec: root, messages, concurrency, hosts (1|2), kill (bool), infected_every."""
    root = Path(spec["root"])
    hosts = dict(list(FILTERS.items())[: spec.get("hosts", 2)])
    work = Path(tempfile.mkdtemp(prefix="kav-scaleout-"))
    os.chmod(work, 0o755)  # noqa: S103 - the hosts' daemons (postfix's setgid helpers) stat it
    bases = work / "signatures"
    if spec.get("bench_signatures"):
        from bench.filter.run import signatures

        signatures(bases)
    else:
        bases.mkdir()
        (bases / "local.ndb").write_text("Test.Body.Sig:0:*:6b61763474657374{2-8}7369676e\n")
    rnd = random.Random(spec.get("seed", 1))
    run_id = f"{os.getpid()}{int(time.time())}"
    every = spec.get("infected_every", 20)
    big = spec.get("big_every", 0)  # > 0: every big-th message is spooled by the filter host
    # (first, stop, step): every step-th message of that range is big as well (the kill's window)
    b_first, b_stop, b_step = spec.get("big_window", (0, 0, 1))
    msgs = [message(i, every > 0 and i % every == 0, run_id, rnd,
                    big=(big > 0 and i % big == 1) or (b_first <= i < b_stop and i % b_step == 0))
            for i in range(spec["messages"])]
    infected = {m[0] for i, m in enumerate(msgs) if every > 0 and i % every == 0}
    sink = Sink(host=STORE, port=STORE_PORT)
    result: dict = {"hosts": list(hosts), "messages": len(msgs)}
    accepted: list[str] = []
    refused: list[str] = []
    pool_errors: list[str] = []
    pool_ok: list[str] = []
    try:
        with Lab(root, work) as lab:
            sink.start()
            for name, addr in hosts.items():
                start_filter(lab, name, addr, bases)
            use_pool = bool(hosts) and spec.get("haproxy", True)
            mx = start_mx(lab, hosts, haproxy=use_pool)
            stats = work / "haproxy.sock"
            if use_pool:
                wait_for(lambda: all(s["status"] == "UP" for s in haproxy_servers(stats).values()), timeout=30,
                         what="haproxy health checks")
                pool_scans(20, pool_errors, pool_ok)
                result["pool_before"] = haproxy_servers(stats)
            accepted_at_kill = None
            t0 = time.monotonic()
            if spec.get("kill"):
                # mid-run: the first half is submitted; once some mail came back through both filters,
                # filter1 dies the moment it holds a message (the rest of that half is in a filter host
                # or queued on the MX); then the second half is submitted, to the MX that now has one
                # filter host left.  Waiting for a quarter lost the race on a quiet machine: the whole
                # first half had passed before the kill could find mail inside filter1.
                first = threading.Thread(target=drive, args=(msgs[: len(msgs) // 2], spec["concurrency"], accepted,
                                                             refused))
                first.start()
                wait_for(lambda: len(sink.got) >= min(20, len(msgs) // 8), timeout=600,
                         what="the first messages delivered")
                result["in_flight_at_kill"] = kill_with_mail_inside(lab, "filter1")
                result["killed_after_delivered"] = len(sink.got)
                first.join()
                accepted_at_kill = len(accepted)
                result["accepted_at_kill"] = accepted_at_kill
                drive(msgs[len(msgs) // 2:], spec["concurrency"], accepted, refused)
                accepted_after_kill = accepted[accepted_at_kill:]
            else:
                drive(msgs, spec["concurrency"], accepted, refused)
            result["accept_seconds"] = time.monotonic() - t0
            drain(sink, accepted, mx, spec.get("drain_timeout", 300))
            result["seconds"] = time.monotonic() - t0  # first connection until the last message arrived
            if use_pool:
                if spec.get("kill"):
                    wait_for(lambda: haproxy_servers(stats)["filter1"]["status"].startswith("DOWN"), timeout=30,
                             what="haproxy marking filter1 down")
                after_ok: list[str] = []
                after_err: list[str] = []
                pool_scans(20, after_err, after_ok)
                result["pool_after"] = haproxy_servers(stats)
                if spec.get("pool_load"):
                    result["pool_load"] = pool_load(spec["pool_load"], spec.get("pool_concurrency", 8))
                result["pool_after_ok"], result["pool_after_errors"] = len(after_ok), after_err
                clamdscan = shutil.which("clamdscan")
                if clamdscan:
                    result["clamdscan"] = clamdscan_pool(work)
            if spec.get("outage"):
                result["outage"] = outage(lab, mx, sink, hosts, bases, spec["concurrency"], run_id, rnd, accepted)
            time.sleep(1)
            result["queue_left"] = CONTROLS["postfix"].queued(mx)
            syslog = mx.path("/var/log/matrix-syslog").read_text(errors="replace")
            result["bounced"] = [line for line in syslog.splitlines() if "status=bounced" in line]
            result["deferred"] = sum(1 for line in syslog.splitlines() if "status=deferred" in line)
            result["deferred_sample"] = [line[-240:] for line in syslog.splitlines() if "status=deferred" in line][:5]
            # a session cut by the kill: Postfix logs it, then tries the other address or defers
            cut = [line[-240:] for line in syslog.splitlines()
                   if "lost connection with" in line or "Connection reset" in line]
            result["cut_sessions"], result["cut_sample"] = len(cut), cut[:5]
            result["maybe_twice"] = sum(1 for line in cut if "may be sent more than once" in line)
    finally:
        sink.stop()
        if not os.environ.get("KAV_SCALEOUT_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    counts = Counter(_mid(g.data) for g in sink.got)
    result["accepted"] = len(accepted)
    result["refused"] = refused
    result["delivered_unique"] = len(set(counts) & set(accepted))
    result["lost"] = sorted(set(accepted) - set(counts))
    result["duplicates"] = {m: c for m, c in counts.items() if c > 1}
    result["unexpected"] = sorted(set(counts) - {m[0] for m in msgs} - set(accepted))  # the outage's are accepted
    host_of = {_mid(g.data): filter_host_of(g.data) for g in sink.got}
    result["per_host"] = dict(Counter(host_of.values()))
    if accepted_at_kill is not None:  # submitted after filter1 was dead: only filter2 can have scanned them
        result["per_host_accepted_after_kill"] = dict(Counter(host_of.get(m, "lost") for m in accepted_after_kill))
    result["infected_with_eicar"] = sum(1 for g in sink.got if _mid(g.data) in infected and EICAR in g.data)
    result["infected_delivered"] = sum(1 for g in sink.got if _mid(g.data) in infected)
    result["pool_before_ok"], result["pool_before_errors"] = len(pool_ok), pool_errors
    result["rate"] = len(set(counts) & set(accepted)) / result["seconds"] if result.get("seconds") else 0.0
    return result


def clamdscan_pool(work: Path) -> dict:
    """Debian's clamdscan against the pool, the way a third host would use it."""
    conf = work / "clamd-pool.conf"
    conf.write_text(f"TCPSocket {CLAMD_PORT}\nTCPAddr {MX}\n")
    sample = work / "eicar.com"
    sample.write_bytes(EICAR)
    proc = subprocess.run(["clamdscan", f"--config-file={conf}", "--stream", "--no-summary", str(sample)],
                          capture_output=True, text=True, timeout=60)
    return {"rc": proc.returncode, "out": proc.stdout.strip()}


def _mid(data: bytes) -> str:
    m = re.search(rb"^Message-ID:\s*(<[^>\r\n]*>)", data, re.M | re.I)
    return m.group(1).decode() if m else ""


# -- entry points -------------------------------------------------------------------------------------
def tools_missing() -> str:
    """Why the lab cannot run here, or ''."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, overlay mounts)"
    for tool in ("unshare", "nsenter", "ip", "haproxy"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install haproxy iproute2 util-linux)"
    if subprocess.run(["unshare", "--net", "ip", "link", "add", "kso-probe", "type", "bridge"],
                      capture_output=True).returncode != 0:
        return "cannot create a network namespace with a bridge here"
    if not is_cached(ROOT_SPEC) and shutil.which("debootstrap") is None:
        return "no cached bookworm-postfix root (real Postfix) and no debootstrap to build one"
    return ""


def run_in_namespace(spec: dict, timeout: float = 1200) -> dict:
    """Run :func:`run` in a fresh network namespace (the LAN); the host's network is never touched."""
    root, _ = ensure_root(ROOT_SPEC)  # outside: building a root needs the host's network
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(["unshare", "--net", "--", sys.executable, "-m", "tests.support.scaleout",
                           json.dumps({**spec, "root": str(root)})],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"scale-out lab failed ({proc.returncode}): {proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
