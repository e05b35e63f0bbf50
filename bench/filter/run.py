#!/usr/bin/env python3
"""bench/filter: smtp-source -> content filter -> smtp-sink; smtpscanner vs clamsmtp and amavisd-new.

One command: ``python3 bench/filter/run.py`` (options: ``--levels 1,5,10,20,50``,
``--messages N``, ``--only smtpscanner|clamsmtp``).

* Load: Postfix's ``smtp-source`` sending ~10 KB messages with an attachment from pre-formatted
  files (``-F``); 5 % of the messages carry the EICAR test file (a second smtp-source stream with
  max(1, 5 % of the sessions) sessions running at the same time as the clean stream).
* Far end: Postfix's ``smtp-sink -u nobody`` (thousands of msgs/s: never the bottleneck).
* Contenders on the same signature directory (a generated ``.hdb`` with the EICAR MD5 and random
  hashes plus a generated ``.ndb``): aveserver + smtpscanner (SMTP in, notifications off, infected
  objects removed), Debian's clamd + clamsmtpd (which drops infected mail) and, when installed,
  Debian's amavisd-new + clamd (virus checks only, infected mail discarded).
* Reported per contender and concurrency: messages/s over the whole run, p50/p99 added latency
  (a probe client timing whole SMTP transactions through the filter during the load, minus the
  same probe straight to smtp-sink), peak RSS of the contender's processes (psutil, 0.2 s samples).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(p: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process {proc.args} exited with {proc.returncode}")
        time.sleep(0.1)
    raise SystemExit(f"port {p} did not open")


def wait_unix(path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as s:
            if s.connect_ex(str(path)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{path} did not open")


def make_message(attachment: bytes, name: str, subject: str) -> bytes:
    b64 = base64.encodebytes(attachment).decode()
    text = ("From: load@example.com\nTo: sink@example.com\nSubject: " + subject + "\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\n'
            + "Benchmark body line.\n" * 40 + "\n--b1\nContent-Type: application/octet-stream\n"
            f'Content-Disposition: attachment; filename="{name}"\nContent-Transfer-Encoding: base64\n\n'
            + b64 + "\n--b1--\n")
    return text.encode()


def signatures(bases: Path, n_hash: int = 20000, n_body: int = 2000) -> None:
    rnd = random.Random(7)
    bases.mkdir(parents=True, exist_ok=True)
    lines = [f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Bench.EICAR-Test-File"]
    lines += [f"{rnd.getrandbits(128):032x}:{rnd.randint(100, 100000)}:Bench.Hash.{i}" for i in range(n_hash)]
    (bases / "bench.hdb").write_text("\n".join(lines) + "\n")
    body = [f"Bench.Body.{i}:0:*:{rnd.getrandbits(96):024x}" for i in range(n_body)]
    (bases / "bench.ndb").write_text("\n".join(body) + "\n")


class RSS:
    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self.pids:
                try:
                    p = psutil.Process(pid)
                    procs = [p, *p.children(recursive=True)]
                except psutil.Error:
                    continue
                for q in procs:
                    try:
                        total += q.memory_info().rss
                    except psutil.Error:
                        pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def stop(self) -> int:
        self._stop.set()
        self.thread.join()
        return self.peak


def probe(p: int, data: bytes, stop: threading.Event, out: list[float], limit: int = 40) -> None:
    while not stop.is_set() and len(out) < limit:
        t0 = time.perf_counter()
        try:
            with smtplib.SMTP("127.0.0.1", p, timeout=60) as c:
                c.sendmail("probe@example.com", ["sink@example.com"], data)
        except (smtplib.SMTPException, OSError):
            continue
        out.append(time.perf_counter() - t0)
        stop.wait(0.05)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def load(p: int, work: Path, sessions: int, messages: int) -> tuple[float, int, list[float]]:
    n_bad = max(1, round(messages * 0.05))
    s_bad = max(1, round(sessions * 0.05))
    s_good = max(1, sessions - s_bad) if sessions > 1 else 1
    base = ["smtp-source", "-f", "load@example.com", "-t", "sink@example.com", "-M", "localhost"]
    lat: list[float] = []
    stop = threading.Event()
    t = threading.Thread(target=probe, args=(p, (work / "clean.eml").read_bytes(), stop, lat), daemon=True)
    t0 = time.perf_counter()
    good = subprocess.Popen([*base, "-s", str(s_good), "-m", str(messages - n_bad), "-F", str(work / "clean.eml"),
                             f"127.0.0.1:{p}"], stderr=subprocess.PIPE)
    bad = subprocess.Popen([*base, "-s", str(s_bad), "-m", str(n_bad), "-F", str(work / "eicar.eml"),
                            f"127.0.0.1:{p}"], stderr=subprocess.PIPE)
    t.start()
    _, e1 = good.communicate()
    _, e2 = bad.communicate()
    elapsed = time.perf_counter() - t0
    stop.set()
    t.join()
    errors = (e1 + e2).decode(errors="replace").count("\n")
    if errors and os.environ.get("BENCH_DEBUG"):
        print((e1 + e2).decode(errors="replace")[:2000], file=sys.stderr)
    return messages / elapsed, errors, lat


def stop_proc(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_kav(work: Path, sink: int) -> tuple[list[subprocess.Popen[bytes]], int]:
    p = port()
    conf = work / "kav.conf"
    conf.write_text(f"""[path]
BasesPath={work / 'bases'}
LocalSocketPath={work / 'aveserver.sock'}
AVSpidPATH={work / 'aveserver.pid'}
TempPath={work / 'kavspool'}
[aveserver.options]
DetachFromTerminal=no
User=root
[aveserver.report]
ReportFileName={work / 'aveserver.log'}
ReportLevel=3
[smtpscan.general]
Protocol=smtp
ListenAddress=inet:127.0.0.1:{p}
ForwardMailer=smtp:127.0.0.1:{sink}
[smtpscan.limits]
MaxScanners=64
[smtpscan.report]
ReportFileName={work / 'smtpscanner.log'}
[smtpscan.group:default]
AdminNotify=no
RecipientNotify=no
SenderNotify=no
RecipientAttachReport=no
RecipientAction=remove
""")
    (work / "kavspool").mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), KAV_ENGINE_CACHE=str(work / "engine-cache"))
    ave = subprocess.Popen([sys.executable, "-m", "runtime.engine.server", "-c", str(conf), "-f"], env=env)
    wait_unix(work / "aveserver.sock")
    prof = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    scan = subprocess.Popen([sys.executable, *prof, "-m", "runtime.filter.main", "-c", str(conf), "--daemon",
                             "--processes", os.environ.get("BENCH_PROCESSES", "1")], env=env,
                            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(p, scan)
    return [scan, ave], p


def start_clamd(work: Path) -> subprocess.Popen[bytes]:
    (work / "clamtmp").mkdir(exist_ok=True)
    (work / "clamd.sock").unlink(missing_ok=True)
    (work / "clamd.conf").write_text(f"""Foreground yes
LocalSocket {work / 'clamd.sock'}
DatabaseDirectory {work / 'bases'}
TemporaryDirectory {work / 'clamtmp'}
LogFile {work / 'clamd.log'}
MaxThreads 20
User root
""")
    clamd = subprocess.Popen(["clamd", "-c", str(work / "clamd.conf")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    wait_unix(work / "clamd.sock")
    return clamd


def start_amavis(work: Path, sink: int) -> tuple[list[subprocess.Popen[bytes]], int]:
    """amavisd-new (Debian 2.13) + clamd: virus checks only (spam, banned, header checks bypassed),
    infected mail discarded; 10 amavisd children (its usual pairing with the MTA's maxproc)."""
    import pwd

    p = port()
    clamd = start_clamd(work)
    home = work / "amavis"
    for d in ("tmp", "db", "var"):
        (home / d).mkdir(parents=True, exist_ok=True)
    user = pwd.getpwnam("amavis")
    for d in (home, home / "tmp", home / "db", home / "var"):
        os.chown(d, user.pw_uid, user.pw_gid)
    conf = work / "amavisd.conf"  # amavisd refuses a config in a directory it can write
    conf.write_text(f"""use strict;
$MYHOME = '{home}';
$TEMPBASE = "$MYHOME/tmp";
$db_home = "$MYHOME/db";
$pid_file = "$MYHOME/var/amavisd.pid";
$lock_file = "$MYHOME/var/amavisd.lock";
$daemon_user = 'amavis'; $daemon_group = 'amavis';
$myhostname = 'bench.example.com';
$mydomain = 'example.com';
$inet_socket_bind = '127.0.0.1';
$inet_socket_port = {p};
$forward_method = 'smtp:[127.0.0.1]:{sink}';
$notify_method = $forward_method;
$max_servers = 10;
$enable_db = 0;
$enable_zmq = 0;
$do_syslog = 0;
$LOGFILE = "$MYHOME/amavis.log";
$log_level = 0;
@bypass_spam_checks_maps = (1);
@bypass_banned_checks_maps = (1);
@bypass_header_checks_maps = (1);
$final_virus_destiny = D_DISCARD;
$virus_admin = undef;
$warnvirusrecip = 0;
$enable_dkim_verification = 0;
@av_scanners = (['ClamAV-clamd', \\&ask_daemon, ["CONTSCAN {{}}\\n", "{work / 'clamd.sock'}"],
  qr/\\bOK$/m, qr/\\bFOUND$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND$/m ]);
@av_scanners_backup = ();
1;
""")
    amavis = subprocess.Popen(["amavisd", "-c", str(conf), "foreground"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_port(p, amavis)
    return [amavis, clamd], p


def start_clamsmtp(work: Path, sink: int) -> tuple[list[subprocess.Popen[bytes]], int]:
    p = port()
    clamd = start_clamd(work)
    (work / "clamsmtpd.conf").write_text(f"""OutAddress: 127.0.0.1:{sink}
Listen: 127.0.0.1:{p}
ClamAddress: {work / 'clamd.sock'}
TempDirectory: {work / 'clamtmp'}
PidFile: {work / 'clamsmtpd.pid'}
MaxConnections: 128
""")
    smtpd = subprocess.Popen(["clamsmtpd", "-d", "1", "-f", str(work / "clamsmtpd.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(p, smtpd)
    return [smtpd, clamd], p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,5,10,20,50")
    ap.add_argument("--messages", type=int, default=1000, help="messages per contender and level")
    ap.add_argument("--only", choices=("smtpscanner", "clamsmtp", "amavisd-new"))
    args = ap.parse_args()
    for tool in ("smtp-source", "smtp-sink", "clamd", "clamsmtpd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (postfix, clamav-daemon, clamsmtp)")
    levels = [int(x) for x in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-filter."))
    os.chmod(work, 0o755)  # noqa: S103 - smtp-sink runs as nobody
    rnd = random.Random(1)
    attach = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz \n") for _ in range(6500))
    (work / "clean.eml").write_bytes(make_message(attach, "report.txt", "clean"))
    (work / "eicar.eml").write_bytes(make_message(EICAR, "eicar.com", "eicar"))
    signatures(work / "bases")
    sink_port = port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(sink_port, sink)
    base_lat: list[float] = []
    probe(sink_port, (work / "clean.eml").read_bytes(), threading.Event(), base_lat, limit=40)
    base = statistics.median(base_lat)
    results: dict[str, dict[int, tuple[float, float, float, int, int]]] = {}
    try:
        contenders = [("smtpscanner", start_kav), ("clamsmtp", start_clamsmtp)]
        if shutil.which("amavisd"):
            contenders.append(("amavisd-new", start_amavis))
        else:
            print("amavisd-new not installed: skipped", file=sys.stderr)
        for name, start in contenders:
            if args.only and args.only != name:
                continue
            procs, p = start(work, sink_port)
            try:
                load(p, work, 2, 50)  # warm up (connections, caches)
                results[name] = {}
                for lvl in levels:
                    rss = RSS([q.pid for q in procs])
                    rate, errors, lat = load(p, work, lvl, args.messages)
                    peak = rss.stop()
                    added = [x - base for x in lat]
                    results[name][lvl] = (rate, pct(added, 0.5) * 1000, pct(added, 0.99) * 1000, peak, errors)
                    print(f"{name:12s} c={lvl:<3d} {rate:8.1f} msg/s  p50 +{results[name][lvl][1]:7.1f} ms  "
                          f"p99 +{results[name][lvl][2]:7.1f} ms  RSS {peak / 2**20:6.1f} MiB  errors {errors}",
                          flush=True)
            finally:
                for q in procs:
                    stop_proc(q)
    finally:
        stop_proc(sink)
        shutil.rmtree(work, ignore_errors=True)
    print("\n| contender | sessions | msgs/s | p50 added ms | p99 added ms | peak RSS MiB | smtp-source errors |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for lvl, (rate, p50, p99, peak, errors) in rows.items():
            print(f"| {name} | {lvl} | {rate:.1f} | {p50:.1f} | {p99:.1f} | {peak / 2**20:.1f} | {errors} |")
    best = {n: max(r[0] for r in rows.values()) for n, rows in results.items()}
    if "smtpscanner" in best:
        for peer in (n for n in best if n != "smtpscanner"):
            print(f"\nbest msgs/s: smtpscanner {best['smtpscanner']:.1f}, {peer} {best[peer]:.1f}, "
                  f"ratio {best['smtpscanner'] / best[peer]:.2f}x (target vs clamsmtp >= 2x)")
            for lvl in levels:
                print(f"  c={lvl}: ratio {results['smtpscanner'][lvl][0] / results[peer][lvl][0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
