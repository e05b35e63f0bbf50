"""``python3 -m bench.engine``: aveserver against Debian's clamscan and clamd, same files, same run.

Prints MB/s, files/s, database load time and memory of each engine and the ratios.  ClamAV
gets ``--max-filesize``/``--max-scansize`` (clamd: MaxFileSize/MaxScanSize...) above the largest
corpus file, so it really scans everything instead of skipping big files at its defaults.

Contenders: aveserver from this tree (the venv: the ``hyperscan`` wheel), aveserver from the
installed .deb (``--deb``: ``dist/*.deb`` unpacked with ``dpkg -x`` and run by Debian's
``/usr/bin/python3`` with Debian's packages: libhs.so.5 through ctypes), clamscan and clamd.
Memory is PSS summed over the process tree (``/proc/PID/smaps_rollup``, as smem counts it), idle
after the load and at its peak during the scan.
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
CACHE_DIR: Path | None = None  # --cache


def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) summed over a process and its descendants, in bytes."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    rss = pss = 0
    for p in procs:
        try:
            for line in Path(f"/proc/{p.pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


class MemSampler(threading.Thread):
    """Peak of the summed RSS and PSS of a process tree, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = 0
        self.peak_pss = 0
        self.stop = threading.Event()

    def sample(self) -> None:
        rss, pss = tree_memory(self.pid)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.05)


def wait_socket(path: Path, proc: subprocess.Popen[bytes], ping: bytes, timeout: float = 3600) -> float:
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


def idle_memory(pid: int, settle: float = 2.0) -> tuple[int, int]:
    """Memory once the workers are up and the load's garbage is gone."""
    time.sleep(settle)
    return tree_memory(pid)


def run_aveserver(db: Path, files: list[Path], work: Path, cold: bool, key: Path | None = None,
                  deb_root: Path | None = None, scan_files: bool = True) -> dict[str, float]:
    """aveserver from this tree, or (``deb_root``) from the unpacked .deb under Debian's python3."""
    cache = CACHE_DIR or work / "ave-cache"  # shared: the .deb's first start only compiles its (libhs) matchers
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    conf = work / "kav.conf"
    keyline = f"BasesPublicKey={key}\n" if key else ""
    conf.write_text(
        f"[path]\nBasesPath={db}\nLocalSocketPath={work}/ave.sock\nAVSpidPATH={work}/ave.pid\n{keyline}\n"
        "[aveserver.options]\nDetachFromTerminal=no\nWorkers=0\nUser=root\nStreamMaxLength=2000000000\n\n"
        f"[aveserver.limits]\nMaxUnpackedSize=2000000000\nMaxScanTime=600\n\n"
        f"[aveserver.report]\nReportFileName={work}/ave.log\nReportLevel=3\n"
    )
    conf.write_text(conf.read_text().replace("[path]\n", f"[path]\nCachePath={cache}\n", 1))
    if deb_root is None:
        env = dict(os.environ, PYTHONPATH=str(REPO), KAV_ENGINE_CACHE=str(cache))
        python = sys.executable
    else:  # Debian's interpreter and packages only: no venv, no wheel
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(deb_pythonpath(deb_root)),
               "KAV_ENGINE_CACHE": str(cache), "LANG": "C.UTF-8"}
        python = "/usr/bin/python3"
    proc = subprocess.Popen([python, "-m", "runtime.engine.server", "-c", str(conf)], env=env)
    try:
        load = wait_socket(work / "ave.sock", proc, b"AVE/1 PING\n")
        idle_rss, idle_pss = idle_memory(proc.pid)
        if not scan_files:
            return {"load": load, "idle_pss": idle_pss, "idle_rss": idle_rss}
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
        return {"load": load, "wall": wall, "rss": mem.peak_rss, "pss": mem.peak_pss, "found": found,
                "idle_pss": idle_pss, "idle_rss": idle_rss}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def deb_pythonpath(root: Path) -> Path:
    """Where the unpacked package keeps the ``runtime`` package."""
    for init in sorted(root.rglob("runtime/engine/server.py")):
        return init.parents[2]
    raise RuntimeError(f"{root}: no runtime/engine/server.py in the unpacked package")


def unpack_deb(deb: Path, work: Path) -> Path:
    root = work / "deb-root"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


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
        idle_rss, idle_pss = idle_memory(proc.pid)
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
                "found": sum(1 for ln in r.stdout.splitlines() if ln.endswith(" FOUND")),
                "idle_pss": idle_pss, "idle_rss": idle_rss}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def sample_corpus(corpus: Path, files: list[Path], budget_mb: float, work: Path) -> tuple[Path, list[Path]]:
    """Every k-th file (the same mix of kinds), copied, up to ``budget_mb``: the full-scale
    database makes ClamAV scan at a fraction of a MB/s, and every contender gets the same files."""
    total = sum(f.stat().st_size for f in files)
    stride = max(1, round(total / (budget_mb * 1e6)))
    root = work / "corpus-sample"
    picked = []
    for f in files[::stride]:
        dest = root / f.relative_to(corpus)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
        picked.append(dest)
    return root, picked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.engine")
    ap.add_argument("--skip-clamscan", action="store_true")
    ap.add_argument("--scale", choices=("bench", "small", "full"), default="bench",
                    help="bench: 100k hashes + 10k .ndb; small/full: a ClamAV-shaped database "
                         "(bench/engine/clamdb.py), "
                         "full = 4M hashes, 60k .ndb, 40k .ldb, loaded by aveserver from a signed main.cvd")
    ap.add_argument("--sample", type=float, default=0, metavar="MB",
                    help="scan an evenly spread sample of the corpus of about this size (0: all of it)")
    ap.add_argument("--deb", type=Path, default=None,
                    help="the .deb to unpack and run as a contender (default: the newest dist/*.deb, if any)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep aveserver's compiled cache here between runs (default: a temporary directory); "
                         "with --no-cold a full-scale run need not rebuild it")
    ap.add_argument("--no-cold", action="store_true", help="do not measure the first (cold) start")
    args = ap.parse_args(argv)
    global CACHE_DIR
    CACHE_DIR = args.cache
    print("building/reusing corpus and signatures under ~/.cache/kav4ms/bench-engine ...", flush=True)
    corpus = build_corpus()
    key = None
    if args.scale == "bench":
        db = ave_db = build_signatures(corpus)
    else:
        db, ave_db, key = clamdb.build(args.scale, corpus)
    deb = args.deb or max((REPO / "dist").glob("kav4mailservers_*.deb"), default=None, key=lambda p: p.stat().st_mtime)
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        work = Path(tmp)
        files = corpus_files(corpus)
        if args.sample:
            corpus, files = sample_corpus(corpus, files, args.sample, work)
        total = sum(f.stat().st_size for f in files)
        largest = max(f.stat().st_size for f in files)
        counts = {p.suffix: sum(1 for _ in open(p, "rb")) for p in sorted(db.iterdir()) if p.is_file()}
        print(f"corpus: {len(files)} files, {total / 1e6:.1f} MB (largest {largest / 1e6:.1f} MB); signatures: "
              + ", ".join(f"{n} {sfx}" for sfx, n in counts.items()) + f"; cores: {os.cpu_count()}", flush=True)
        print(f"ClamAV limits: {' '.join(clam_limits(largest))} (above the largest file)", flush=True)
        res = {}
        if not args.no_cold:
            res["aveserver (cold)"] = run_aveserver(ave_db, files, work, cold=True, key=key, scan_files=False)
            print(f"aveserver cold load done: {res['aveserver (cold)']['load']:.1f} s", flush=True)
        res["aveserver"] = run_aveserver(ave_db, files, work, cold=False, key=key)
        print("aveserver warm done", flush=True)
        if deb is not None:
            root = unpack_deb(deb, work)
            res[".deb (1st start)"] = run_aveserver(ave_db, files, work, cold=False, key=key, deb_root=root,
                                                    scan_files=False)
            print(f"aveserver .deb first start (compiles with libhs) done: {res['.deb (1st start)']['load']:.1f} s",
                  flush=True)
            res["aveserver .deb"] = run_aveserver(ave_db, files, work, cold=False, key=key, deb_root=root)
            print(f"aveserver (installed .deb {deb.name}) done", flush=True)
        else:
            print("aveserver (installed .deb): no dist/*.deb (make deb)", flush=True)
        if not args.skip_clamscan:
            res["clamscan"] = run_clamscan(db, corpus, work, largest)
            print("clamscan done", flush=True)
        res["clamd"] = run_clamd(db, corpus, work, largest)
        print("clamd done", flush=True)
    print()
    print(f"{'engine':18} {'MB/s':>8} {'files/s':>8} {'scan s':>8} {'load s':>8} {'idle PSS MB':>12} "
          f"{'peak PSS MB':>12} {'peak RSS MB':>12} {'found':>6}")
    for name, r in res.items():
        if "wall" not in r:
            print(f"{name:18} {'':>8} {'':>8} {'':>8} {r['load']:8.2f} {r['idle_pss'] / 1e6:12.0f}")
            continue
        idle = f"{r['idle_pss'] / 1e6:12.0f}" if "idle_pss" in r else f"{'-':>12}"  # clamscan: no idle daemon
        print(f"{name:18} {total / 1e6 / r['wall']:8.2f} {len(files) / r['wall']:8.1f} {r['wall']:8.1f} "
              f"{r['load']:8.2f} {idle} {r['pss'] / 1e6:12.0f} {r['rss'] / 1e6:12.0f} {int(r['found']):6d}")
    print()
    cd = res["clamd"]
    for name in ("aveserver", "aveserver .deb"):
        ave = res.get(name)
        if ave is None:
            continue
        print(f"{name}:")
        if "clamscan" in res:
            print(f"  throughput / clamscan: {res['clamscan']['wall'] / ave['wall']:.2f}x (goal >= 3x)")
        print(f"  throughput / clamd:    {cd['wall'] / ave['wall']:.2f}x (goal >= 2x)")
        print(f"  load / clamd:          {ave['load'] / cd['load']:.2f} warm (goal <= 1)")
        print(f"  PSS / clamd:           {ave['idle_pss'] / cd['idle_pss']:.2f} idle, "
              f"{ave['pss'] / cd['pss']:.2f} peak (goal <= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
