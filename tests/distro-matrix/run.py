#!/usr/bin/env python3
"""Entry point for `make matrix`: run by path, since tests/distro-matrix/ (with a dash, as the
issue names it) cannot be imported as a package; the library lives in ./distro_matrix/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distro_matrix.cli import main  # noqa: E402

sys.exit(main())
