"""`python3 -m distro_matrix` (from tests/distro-matrix/) — same as run.py."""

import sys

from .cli import main

sys.exit(main())
