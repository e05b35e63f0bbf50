"""Suite-wide rules.

Corpus tests (marked ``corpus``, see ``tests/support/corpus.py``) skip on a bare clone, but under
CI (``CI=true``) a missing corpus or any skipped corpus test fails the run: CI is where the
round-trip proof against real-world configurations must actually execute.
"""

from __future__ import annotations

import os

import pytest

from tests.support import corpus


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_sessionstart(session: pytest.Session) -> None:
    if _under_ci() and not corpus.available():
        raise pytest.UsageError(f"CI=true but {corpus.SKIP_REASON}: the corpus tests must run in CI")


_corpus_tests: set[str] = set()
_skipped_corpus: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _corpus_tests.update(item.nodeid for item in items if item.get_closest_marker(corpus.MARK))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and report.nodeid in _corpus_tests and report.nodeid not in _skipped_corpus:
        _skipped_corpus.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _under_ci() and _skipped_corpus:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            n = len(_skipped_corpus)
            tr.write_line(f"CI=true: {n} corpus test(s) were skipped; they must run in CI:", red=True)
            for nodeid in _skipped_corpus[:20]:
                tr.write_line(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
