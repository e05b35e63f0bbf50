"""``python -m bench.scanner.floor CONF LIST``: the engine alone over the files named in LIST.

The lower bound of any kavscanner built on this engine: the same configuration, database cache
and worker count as ``kavscanner --in-process`` (forked workers sharing the loaded engine,
``scan_file`` on each path), and nothing else: no walk, no iChecker, no report, no actions, no
JSON, and only a status word sent back per file.  bench.scanner times the whole command, start-up
and database load included, as it times kavscanner, so the difference between the two rows is
what kavscanner itself costs.

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
from runtime.scanner.scan import CHUNK, default_workers, scan_file

_ENGINE: Engine | None = None


def _status(path: str) -> tuple[str, int]:
    assert _ENGINE is not None
    r = scan_file(_ENGINE, path, False)
    return (r.verdict.status.value if r.verdict is not None else "ERROR"), (r.st.st_size if r.st else 0)


def main(argv: list[str]) -> int:
    global _ENGINE
    conf, listing = argv
    cfg = load_config(conf)
    _ENGINE = Engine.load(cfg.get("path", "BasesPath"), Limits.from_config(cfg), default_cache_dir())
    paths = Path(listing).read_text().splitlines()
    import multiprocessing

    t0 = time.monotonic()
    with multiprocessing.get_context("fork").Pool(default_workers()) as pool:
        out = list(pool.imap_unordered(_status, paths, chunksize=CHUNK))
    seconds = time.monotonic() - t0
    print(json.dumps({"files": len(out), "bytes": sum(n for _s, n in out),
                      "statuses": dict(Counter(s for s, _n in out)), "seconds": round(seconds, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
