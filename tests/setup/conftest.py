"""Setup tests build small roots and fsync every journal step: roots on tmpfs when it exists
(as tests/integration/conftest.py, same reason)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    d = Path(tempfile.mkdtemp(prefix="kavsetup-", dir=base))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
