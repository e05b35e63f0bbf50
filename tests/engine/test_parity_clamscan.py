"""Parity with Debian's clamscan on the same plain database files (issue 12, item 3).

bench/engine/parity.py plants a sample for every signature kind (.hdb/.hsb/.mdb/.ndb/.ldb, .fp,
.sfp, .ign2) plus near misses and clean files, runs ``clamscan --allmatch`` once over them and our
engine on each; every difference must be one explained in bench/README.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.engine.parity import EXPLAINED, compare
from runtime.engine import matcher

pytestmark = pytest.mark.skipif(shutil.which("clamscan") is None, reason="Debian's clamav (clamscan) not installed")


@pytest.mark.parametrize("prefilter", ["default", "aho-corasick"])
def test_same_verdicts_as_clamscan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefilter: str) -> None:
    if prefilter == "aho-corasick":
        monkeypatch.setattr(matcher, "hyperscan", None)
    rows, diffs = compare(tmp_path)
    assert diffs == []
    assert len(rows) > 50
    assert sum(1 for _, ours, _ in rows if ours) >= 35  # the planted samples really are detected
    assert {name for name, ours, clam in rows if ours != clam} == set(EXPLAINED)
