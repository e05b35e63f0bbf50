"""The matrix as pytest tests: one test per suite x MTA x scenario (issue 7).

Each cell runs all its scenarios once, in order, in one sandbox (they build on each other: the
snapshot taken at install is compared at remove); the tests then report each scenario's outcome.
A scenario blocked by a product part that has not landed is a skip carrying the reason; a partial
one (everything that exists passed, a named part could not run) is a skip too, with what ran.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from distro_matrix.host import host_problem
from distro_matrix.known import known_defect
from distro_matrix.sandbox import cleanup_stale
from distro_matrix.scenarios import SCENARIOS, Cell
from distro_matrix.spec import all_specs

pytestmark = [pytest.mark.root, pytest.mark.matrix, pytest.mark.slow]

SPECS = all_specs()
_cells: dict[str, Cell] = {}


@pytest.fixture(scope="session")
def matrix_host() -> None:
    problem = host_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="session")
def matrix(matrix_host: None, deb: Path) -> dict[str, Cell]:
    """All cells, two at a time (KAVMATRIX_JOBS): each has its own namespaces, so they cannot collide."""
    if not _cells:
        cleanup_stale()
        cells = [Cell(spec, deb) for spec in SPECS]
        with ThreadPoolExecutor(int(os.environ.get("KAVMATRIX_JOBS", "2"))) as ex:
            for cell in ex.map(lambda c: (c.run(), c)[1], cells):
                _cells[cell.spec.name] = cell
    return _cells


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("cell_name", [s.name for s in SPECS])
def test_scenario(cell_name: str, scenario: str, matrix: dict[str, Cell]) -> None:
    outcomes = matrix[cell_name].outcomes
    if scenario not in outcomes:
        pytest.skip(f"{scenario} does not apply to {cell_name}")
    outcome = outcomes[scenario]
    if outcome.status == "blocked":
        pytest.skip(f"blocked: {outcome.detail.splitlines()[0]}")
    if outcome.status == "partial":
        pytest.skip(f"partial: {' / '.join(outcome.detail.splitlines()[:2])}")
    if outcome.status == "fail" and (defect := known_defect(outcome.detail)):
        pytest.xfail(f"known product defect: {defect}")
    assert outcome.status == "pass", f"{cell_name} {scenario} failed:\n{outcome.detail}"
