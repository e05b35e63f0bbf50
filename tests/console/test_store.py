"""The statistics store under concurrent writers: pre-forked smtpscanner processes each open their own
connection and every message is one transaction, so totals are exact whatever the interleaving."""

from __future__ import annotations

import os
from pathlib import Path

from runtime.filter.statstore import BUCKETS, Part, StatStore


def _writer(path: Path, n: int, infected_every: int) -> None:
    store = StatStore(path)
    for i in range(n):
        infected = i % infected_every == 0
        part = Part("INFECTED" if infected else "OK", ("EICAR-Test-File",) if infected else (), "a@example.com", 1)
        assert store.record([part], 1000, 0.02)


def test_concurrent_processes_count_exactly(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    StatStore(path).connect()  # created once, as smtpscanner's first write does
    assert path.stat().st_mode & 0o777 == 0o640
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _writer(path, 150, 10)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    t = StatStore(path).totals()
    assert t["messages"] == {"OK": 540, "INFECTED": 60}
    assert t["detections"] == {"EICAR-Test-File": 60}
    assert t["bytes"][""] == 600 * 1000
    assert t["duration_count"][""] == 600 and t["duration_bucket"] == {repr(0.025): 600}
    assert 0.025 in BUCKETS


def test_deferred_parts_count_as_temp_failures_and_series_bucket_by_time(tmp_path: Path) -> None:
    store = StatStore(tmp_path / "s.sqlite")
    t0 = 1_700_000_000 // 3600 * 3600
    store.record([Part("OK", (), "a", 1)], 10, 0.001, when=t0 + 10)
    store.record([Part("INFECTED", ("X",), "a", 2), Part("OK", (), "a", 1)], 20, 0.5, when=t0 + 3700)
    store.record([Part("DEFERRED", (), "a", 1, "aveserver_unavailable")], 30, 99.0, when=t0 + 3800)
    totals = store.totals()
    assert totals["messages"] == {"OK": 2, "INFECTED": 1}
    assert totals["tempfail"] == {"aveserver_unavailable": 1}
    assert totals["duration_bucket"] == {repr(0.005): 1, repr(0.5): 1, "+Inf": 1}
    starts, counts = store.series(t0, t0 + 7200, 3600)
    assert starts == [t0, t0 + 3600]
    assert counts == {"OK": [1, 1], "INFECTED": [0, 1], "DEFERRED": [0, 1]}
    assert store.top_viruses(t0, t0 + 7200) == [("X", 1)]


def test_an_unwritable_store_never_raises(tmp_path: Path) -> None:
    store = StatStore(tmp_path / "missing-dir" / "s.sqlite")
    assert store.record([Part("OK", (), "a", 1)], 1, 0.1) is False
    assert store.record([Part("OK", (), "a", 1)], 1, 0.1) is False  # and is not retried for a minute
