"""``python -m bench.scanner.floor CONF LIST``: the engine alone over the files named in LIST.

The lower bound of any kavscanner built on this engine: ``kavscanner --in-process``'s own scan
machinery (``runtime.scanner.scan.scan_many``: the same configuration, database cache, worker
count and forked pool, the verdicts coming back as they do to kavscanner), and nothing else: no
walk, no iChecker, no report, no actions, no JSON.  bench.scanner times the whole command,
start-up and database load included, as it times kavscanner, so the difference between the two
rows is what kavscanner itself adds around its engine.

Prints one JSON line: files, bytes, the count of files per verdict status, seconds of the scan.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from runtime.config import load_config
from runtime.engine.engine import Engine
from runtime.engine.limits import Limits
from runtime.engine.matcher import default_cache_dir
from runtime.scanner.scan import default_workers, scan_many


def main(argv: list[str]) -> int:
    conf, listing = argv
    cfg = load_config(conf)
    engine = Engine.load(cfg.get("path", "BasesPath"), Limits.from_config(cfg), default_cache_dir())
    paths = Path(listing).read_text().splitlines()
    t0 = time.monotonic()
    results = list(scan_many(engine, paths, False, default_workers()))
    seconds = time.monotonic() - t0
    statuses = Counter(r.verdict.status.value if r.verdict is not None else "ERROR" for r in results)
    print(json.dumps({"files": len(results), "bytes": sum(r.st.st_size for r in results if r.st is not None),
                      "statuses": dict(statuses), "seconds": round(seconds, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
