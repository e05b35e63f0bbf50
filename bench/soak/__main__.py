"""``python -m bench.soak``: the fault soak (issue 19 item 1; see run.py)."""

import sys

from bench.soak.run import main

sys.exit(main())
