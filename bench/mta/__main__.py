"""``python -m bench.mta``: the filter as installed, end to end through a real Postfix (see run.py)."""

import sys

from bench.mta.run import main

sys.exit(main())
