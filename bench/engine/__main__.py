"""``python3 -m bench.engine``: aveserver against Debian's clamscan and clamd, same files, same run.

Prints MB/s, files/s, database load time and peak memory of each engine and the ratios.  ClamAV
gets ``--max-filesize``/``--max-scansize`` (clamd: MaxFileSize/MaxScanSize...) above the largest
corpus file, so it really scans everything instead of skipping big files at its defaults.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from runtime.engine.client import AveClient
from runtime.engine.verdict import Status

from . import clamdb
from .corpus import build_corpus, build_signatures, corpus_files

REPO = Path(__file__).resolve().parents[2]


class MemSampler(threading.Thread):
    """Peak of the summed RSS and PSS of a process tree, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = 0
        self.peak_pss = 0
        self.stop = threading.Event()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = pss = 0
        for p in procs:
            try:
                m = p.memory_full_info()
                rss += m.rss
                pss += m.pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.05)


def wait_socket(path: Path, proc: subprocess.Popen[bytes], ping: bytes, timeout: float = 600) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(str(path))
                s.sendall(ping)
                if s.recv(64):
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("server did not come up")


def run_aveserver(db: Path, files: list[Path], work: Path, cold: bool, key: Path | None = None) -> dict[str, float]:
    cache = work / "ave-cache"
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    conf = work / "kav.conf"
    keyline = f"BasesPublicKey={key}\n" if key else ""
    conf.write_text(
        f"[path]\nBasesPath={db}\nLocalSocketPath={work}/ave.sock\nAVSpidPATH={work}/ave.pid\n{keyline}\n"
        "[aveserver.options]\nDetachFromTerminal=no\nWorkers=0\nStreamMaxLength=2000000000\n\n"
        f"[aveserver.limits]\nMaxUnpackedSize=2000000000\nMaxScanTime=600\n\n"
        f"[aveserver.report]\nReportFileName={work}/ave.log\nReportLevel=3\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), KAV_ENGINE_CACHE=str(cache))
    proc = subprocess.Popen([sys.executable, "-m", "runtime.engine.server", "-c", str(conf)], env=env)
    try:
        load = wait_socket(work / "ave.sock", proc, b"AVE/1 PING\n")
        mem = MemSampler(proc.pid)
        mem.start()
        found = 0
        lock = threading.Lock()
        local = threading.local()

        def scan(p: Path) -> None:
            nonlocal found
            c = getattr(local, "c", None)
            if c is None:
                c = local.c = AveClient(work / "ave.sock", timeout=600)
            v = c.scan_file(p)
            if v.status in (Status.INFECTED, Status.SUSPICIOUS, Status.WARNING):
                with lock:
                    found += 1

        workers = (os.cpu_count() or 1) * 2
        t1 = time.monotonic()
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(scan, files))
        wall = time.monotonic() - t1
        mem.sample()
        mem.stop.set()
        return {"load": load, "wall": wall, "rss": mem.peak_rss, "pss": mem.peak_pss, "found": found}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def clam_limits(largest: int) -> list[str]:
    mb = largest // 1_000_000 + 100
    return [f"--max-filesize={mb}M", f"--max-scansize={mb * 4}M", "--max-files=100000",
            "--max-recursion=16", "--max-embeddedpe=100M", "--max-htmlnormalize=100M"]


def run_clamscan(db: Path, corpus: Path, work: Path, largest: int) -> dict[str, float]:
    empty = work / "empty.txt"
    empty.write_bytes(b"x")
    base = ["clamscan", f"--database={db}", "--no-summary", *clam_limits(largest)]
    t0 = time.monotonic()
    subprocess.run([*base, str(empty)], capture_output=True, check=False)
    load = time.monotonic() - t0
    proc = subprocess.Popen([*base, "-r", "-i", str(corpus)], stdout=subprocess.PIPE, text=True)
    mem = MemSampler(proc.pid)
    mem.start()
    t1 = time.monotonic()
    out, _ = proc.communicate()
    wall = time.monotonic() - t1
    mem.stop.set()
    return {"load": load, "wall": wall - load, "wall_total": wall, "rss": mem.peak_rss, "pss": mem.peak_pss,
            "found": sum(1 for ln in out.splitlines() if ln.endswith(" FOUND"))}


def run_clamd(db: Path, corpus: Path, work: Path, largest: int) -> dict[str, float]:
    mb = largest // 1_000_000 + 100
    conf = work / "clamd.conf"
    sock = work / "clamd.sock"
    conf.write_text(
        f"LocalSocket {sock}\nDatabaseDirectory {db}\nForeground yes\nLogFile {work}/clamd.log\n"
        f"MaxFileSize {mb}M\nMaxScanSize {mb * 4}M\nMaxFiles 100000\nMaxRecursion 16\n"
        f"StreamMaxLength {mb}M\nMaxThreads {(os.cpu_count() or 1) * 2}\nPidFile {work}/clamd.pid\n"
        "User root\n"
    )
    proc = subprocess.Popen(["clamd", f"--config-file={conf}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        load = wait_socket(sock, proc, b"zPING\0")
        mem = MemSampler(proc.pid)
        mem.start()
        cconf = work / "clamdscan.conf"
        cconf.write_text(f"LocalSocket {sock}\n")
        t1 = time.monotonic()
        r = subprocess.run(["clamdscan", f"--config-file={cconf}", "--multiscan", "--fdpass", "-i", "--no-summary",
                            str(corpus)], capture_output=True, text=True)
        wall = time.monotonic() - t1
        mem.sample()
        mem.stop.set()
        return {"load": load, "wall": wall, "rss": mem.peak_rss, "pss": mem.peak_pss,
                "found": sum(1 for ln in r.stdout.splitlines() if ln.endswith(" FOUND"))}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.engine")
    ap.add_argument("--skip-clamscan", action="store_true")
    ap.add_argument("--scale", choices=("bench", "small", "full"), default="bench",
                    help="bench: 100k hashes + 10k .ndb; small/full: a ClamAV-shaped database "
                         "(bench/engine/clamdb.py), "
                         "full = 4M hashes, 60k .ndb, 40k .ldb, loaded by aveserver from a signed main.cvd")
    args = ap.parse_args(argv)
    print("building/reusing corpus and signatures under ~/.cache/kav4ms/bench-engine ...", flush=True)
    corpus = build_corpus()
    key = None
    if args.scale == "bench":
        db = ave_db = build_signatures(corpus)
    else:
        db, ave_db, key = clamdb.build(args.scale, corpus)
    files = corpus_files(corpus)
    total = sum(f.stat().st_size for f in files)
    largest = max(f.stat().st_size for f in files)
    counts = {p.suffix: sum(1 for _ in open(p, "rb")) for p in sorted(db.iterdir()) if p.is_file()}
    print(f"corpus: {len(files)} files, {total / 1e6:.1f} MB (largest {largest / 1e6:.1f} MB); signatures: "
          + ", ".join(f"{n} {sfx}" for sfx, n in counts.items()) + f"; cores: {os.cpu_count()}", flush=True)
    print(f"ClamAV limits: {' '.join(clam_limits(largest))} (above the largest file)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        work = Path(tmp)
        res = {}
        res["aveserver (cold)"] = run_aveserver(ave_db, files, work, cold=True, key=key)
        print("aveserver cold done", flush=True)
        res["aveserver"] = run_aveserver(ave_db, files, work, cold=False, key=key)
        print("aveserver warm done", flush=True)
        if ave_db != db:
            res["aveserver plain"] = run_aveserver(db, files, work, cold=False)
            print("aveserver on the plain files (warm) done", flush=True)
        print("aveserver (installed .deb): not measured here, no package installed on this host", flush=True)
        if not args.skip_clamscan:
            res["clamscan"] = run_clamscan(db, corpus, work, largest)
            print("clamscan done", flush=True)
        res["clamd"] = run_clamd(db, corpus, work, largest)
        print("clamd done", flush=True)
    print()
    print(f"{'engine':18} {'MB/s':>8} {'files/s':>8} {'scan s':>8} {'load s':>8} {'peak RSS MB':>12} "
          f"{'peak PSS MB':>12} {'found':>6}")
    for name, r in res.items():
        print(f"{name:18} {total / 1e6 / r['wall']:8.1f} {len(files) / r['wall']:8.0f} {r['wall']:8.1f} "
              f"{r['load']:8.2f} {r['rss'] / 1e6:12.0f} {r['pss'] / 1e6:12.0f} {int(r['found']):6d}")
    ave = res["aveserver"]
    print()
    if "clamscan" in res:
        print(f"throughput aveserver / clamscan: {res['clamscan']['wall'] / ave['wall']:.2f}x (target >= 3x)")
    cd = res["clamd"]
    print(f"throughput aveserver / clamd:    {cd['wall'] / ave['wall']:.2f}x (target >= 2x)")
    print(f"load time aveserver / clamd:     {ave['load'] / cd['load']:.2f} warm, "
          f"{res['aveserver (cold)']['load'] / cd['load']:.2f} cold (target <= 1, warm)")
    print(f"peak RSS  aveserver / clamd:     {ave['rss'] / cd['rss']:.2f} (sum over processes), "
          f"PSS {ave['pss'] / cd['pss']:.2f} (target <= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

