"""``python -m bench.filter`` = ``python3 bench/filter/run.py`` (same options)."""

import sys

from bench.filter.run import main

sys.exit(main())
