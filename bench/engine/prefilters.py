"""``python -m bench.engine.prefilters``: the engine with each body-signature prefilter, on the
engine benchmark's own signature set and binaries (run ``python -m bench.engine`` once first to
generate them).  Hyperscan comes from PyPI; the Debian package has only Aho-Corasick
(``python3-ahocorasick``), so this shows what a .deb installation scans at, and that both give the
same detections.  One process per prefilter, one core each.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BASE = Path.home() / ".cache/kav4ms/bench-engine/v1"


def one(mode: str, limit: int) -> None:
    from runtime.engine import matcher

    if mode != "hyperscan":
        matcher.hyperscan = None  # what a Debian installation has
    from runtime.engine.engine import Engine
    from runtime.engine.signatures import load_signatures

    t0 = time.perf_counter()
    eng = Engine(load_signatures(BASE / "db"))
    load = time.perf_counter() - t0
    files = sorted(p for p in (BASE / "corpus" / "bin").rglob("*") if p.is_file())[:limit]
    data = [p.read_bytes() for p in files]
    mb = sum(map(len, data)) / 1e6
    t0 = time.perf_counter()
    found = sum(1 for d in data if not eng.scan(d, "x").clean)
    dt = time.perf_counter() - t0
    print(f"{matcher.prefilter_name():<13} {load:>8.2f} {mb:>8.1f} {mb / dt:>8.1f} {found:>10}", flush=True)


def main() -> int:
    if not (BASE / "db").is_dir():
        print(f"{BASE}: not generated yet; run `python -m bench.engine` first", file=sys.stderr)
        return 1
    print(f"{'prefilter':<13} {'load s':>8} {'MB':>8} {'MB/s':>8} {'detections':>10}")
    for mode in ("hyperscan", "aho-corasick"):
        code = subprocess.call([sys.executable, "-m", "bench.engine.prefilters", "--one", mode])
        if code:
            return code
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        one(sys.argv[2], 400)
        sys.exit(0)
    sys.exit(main())
