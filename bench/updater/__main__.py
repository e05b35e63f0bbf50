"""``python3 -m bench.updater``: keepup2date on a full-size database, and freshclam on the same files.

Builds (once, cached) a mirror holding the engine bench's full-scale ``main.cvd`` (bench/engine/
clamdb.py: ~4.1 M hash records, 100 000 body/logical signatures) re-signed with this bench's key
and a small daily, serves it over HTTP on 127.0.0.1, then times ``keepup2date -g URL`` into an
empty BasesPath: download, verification, load test (peak memory of the child) and switch, as the
report states them.  A second run measures "nothing new".

Debian's freshclam is run against the same mirror.  It verifies every CVD with ClamAV's own
signing key, compiled in, and has no option to trust another; ClamAV's private key is ClamAV's,
so freshclam cannot accept any database we can build.  The bench runs it anyway and prints its
verdict, so the reason is shown rather than asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime.engine.cvd import read_container
from runtime.engine.dsig import PublicKey
from tests.support.clamav import build_cvd, make_test_key
from tests.support.updater import MirrorServer, daily_members, write_conf

from ..engine import clamdb
from ..engine.corpus import CACHE, build_corpus

REPO = Path(__file__).resolve().parents[2]


def mirror_tree(scale: str) -> tuple[Path, Path]:
    """(mirror directory, public key file), re-signed with a key kept beside them."""
    root = CACHE / f"updater-mirror-{scale}"
    if (root / ".complete").exists():
        return root / "tree", root / "key.txt"
    shutil.rmtree(root, ignore_errors=True)
    (root / "tree").mkdir(parents=True)
    _plain, boxed, keyfile = clamdb.build(scale, build_corpus())
    box = read_container(boxed / "main.cvd", PublicKey.from_file(keyfile))
    key = make_test_key()
    build_cvd(root / "tree" / "main.cvd", dict(box.members), key, version=1)
    build_cvd(root / "tree" / "daily.cvd", daily_members(1), key, version=1)
    key.write_public(root / "key.txt")
    (root / ".complete").write_text("ok\n")
    return root / "tree", root / "key.txt"


def keepup2date(conf: Path, *args: str) -> tuple[float, str]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "runtime.updater.cli", "-c", str(conf), *args],
                       env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"keepup2date failed ({r.returncode}): {r.stderr.strip()}")
    return time.monotonic() - t0, r.stderr


def freshclam(url: str, work: Path) -> tuple[float, str]:
    exe = shutil.which("freshclam")
    if not exe:
        return 0.0, "freshclam not installed"
    data = work / "freshclam-db"
    data.mkdir()
    conf = work / "freshclam.conf"
    conf.write_text(f"DatabaseDirectory {data}\nUpdateLogFile {work / 'freshclam.log'}\nDatabaseOwner root\n"
                    f"PrivateMirror {url.rstrip('/')}\nDNSDatabaseInfo no\nScriptedUpdates yes\nMaxAttempts 1\n"
                    "Bytecode no\nConnectTimeout 10\nReceiveTimeout 120\n")
    t0 = time.monotonic()
    r = subprocess.run([exe, f"--config-file={conf}", "--stdout", "--no-warnings"], capture_output=True, text=True,
                       timeout=600, check=False)
    out = (r.stdout + r.stderr).strip().splitlines()
    why = [ln for ln in out if re.search(r"(?i)verif|signature|error|fail", ln)][:3]
    return time.monotonic() - t0, f"exit {r.returncode}: " + (" | ".join(why) or (out[-1] if out else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.updater")
    ap.add_argument("--scale", choices=sorted(clamdb.SCALES), default="full")
    args = ap.parse_args(argv)
    tree, keyfile = mirror_tree(args.scale)
    size = sum(p.stat().st_size for p in tree.iterdir())
    server = MirrorServer(tree)
    work = Path(tempfile.mkdtemp(prefix="bench-updater-"))
    try:
        bases = work / "bases"
        bases.mkdir()
        os.environ["KAV_ENGINE_CACHE"] = str(work / "engine-cache")
        conf = write_conf(work / "k.conf", bases, {"path": {"BasesPublicKey": str(keyfile)},
                                                   "updater.options": {"ReceiveTimeout": "120"}})
        wall, _ = keepup2date(conf, "-g", server.url())
        report = (work / "keepup2date.log").read_text()
        full = re.search(r"main none -> 1 full container \((\d+) bytes, ([\d.]+) s\)", report)
        load = re.search(r"load test of the new set: (\d+) records in ([\d.]+) s, peak memory (\d+) MB", report)
        swap = re.search(r"switched in ([\d.]+) s", report)
        wall2, _ = keepup2date(conf, "-g", server.url())
        fc_time, fc_verdict = freshclam(server.url(), work)
        print(f"keepup2date, {args.scale} database ({size / 1e6:.1f} MB on the mirror, HTTP on 127.0.0.1):")
        if full:
            print(f"  download + verify main.cvd: {int(full.group(1)) / 1e6:.1f} MB in {full.group(2)} s")
        if load:
            print(f"  load test (child, aveserver's loader): {load.group(1)} records in {load.group(2)} s, "
                  f"peak memory {load.group(3)} MB")
        if swap:
            print(f"  switch (backup links + renames): {swap.group(1)} s")
        print(f"  whole run, empty BasesPath: {wall:.1f} s; second run (nothing new): {wall2:.2f} s")
        print(f"freshclam on the same mirror: {fc_time:.1f} s, {fc_verdict}")
        print("  (freshclam verifies CVDs with ClamAV's compiled-in key only: a database signed by anyone "
              "else, this bench's key included, is refused, so no like-for-like timing is possible)")
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
