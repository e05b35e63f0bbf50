"""Integration tests build many small roots and fsync every journal step; on a disk that costs
~10 ms per fsync, so the roots live on tmpfs (/dev/shm) when it exists.  The code under test is
the same; only the waiting goes away."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    d = Path(tempfile.mkdtemp(prefix="kavint-", dir=base))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
