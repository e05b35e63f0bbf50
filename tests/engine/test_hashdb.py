"""The mapped hash table (runtime/engine/hashdb.py): what ``wants`` says must never hide a record.

The engine computes a digest only when ``HashTable.wants`` names its algorithm for the object's
size, so a wrong "no" would be a missed virus.  The property: for any set of records, every
record is found by ``lookup`` through an algorithm ``wants`` names for its size, and no algorithm
is named for a size no record of it has (unless one of its records says ``*``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.engine.hashdb import ALGOS, HashBuilder, HashTable


def _digest(algo: str, seed: int, i: int) -> bytes:
    return hashlib.new(algo, f"{seed}:{i}".encode()).digest()

record = st.tuples(st.sampled_from(("file", "section")), st.sampled_from(ALGOS),
                   st.one_of(st.none(), st.integers(0, 2**40)), st.integers(0, 2**31))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(record, min_size=1, max_size=40), st.lists(st.integers(0, 2**40), max_size=10))
def test_wants_never_hides_a_record(tmp_path: Path, records: list[tuple[str, str, int | None, int]],
                                    probes: list[int]) -> None:
    builder = HashBuilder()
    for i, (kind, algo, size, seed) in enumerate(records):
        builder.add(kind, _digest(algo, seed, i), size, f"Rec.{i}".encode())
    path = tmp_path / "hashes.bin"
    builder.write(path)
    table = HashTable(path)
    for i, (kind, algo, size, seed) in enumerate(records):
        digest = _digest(algo, seed, i)
        at = 12345 if size is None else size
        assert algo in table.wants(kind, at), (kind, algo, size)
        assert algo in table.algorithms(kind)
        assert table.lookup(kind, digest.hex(), at) is not None
    for kind in ("file", "section"):
        for probe in probes:
            expected = {algo for k, algo, size, _s in records if k == kind and size in (None, probe)}
            assert set(table.wants(kind, probe)) == expected
    assert table.count() == len(records)
