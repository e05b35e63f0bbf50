"""``python -m bench`` (``make bench``): every benchmark, each against its real peer in the same run.

Run one alone with ``python -m bench.engine`` or ``python -m bench.filter``.
"""

from __future__ import annotations

import subprocess
import sys


def main() -> int:
    failed = 0
    for name in ("bench.engine", "bench.filter", "bench.scanner", "bench.updater"):
        print(f"==> python -m {name}", flush=True)
        failed |= subprocess.call([sys.executable, "-m", name]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
