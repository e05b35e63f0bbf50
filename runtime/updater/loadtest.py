"""The load test of a staged database set: ``python -m runtime.updater.loadtest DIR KEYFILE``.

Run by keepup2date in a child process so that a set which crashes, loops or exhausts memory
while loading takes only the child down (guide 5.1: the running filter is never broken).  It is
the very call aveserver makes at start and on SIGHUP (``Engine.load`` with the same key and cache
directory), so a set it accepts is a set aveserver accepts — and the compiled-database cache it
fills makes aveserver's reload quick.  Prints one JSON line: records, seconds, peak memory.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from runtime.engine.dsig import load_key
from runtime.engine.engine import DatabaseError, Engine
from runtime.engine.matcher import default_cache_dir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m runtime.updater.loadtest DIR KEYFILE-or-''", file=sys.stderr)
        return 2
    directory, key_path = args
    t0 = time.monotonic()
    try:
        engine = Engine.load(directory, None, default_cache_dir(), load_key(key_path or None))
    except (DatabaseError, ValueError, OSError) as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"records": engine.record_count, "seconds": round(time.monotonic() - t0, 3),
                      "max_rss_kb": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
