"""The shared real-world MTA configuration corpus (``../shared/corpus`` beside the repository).

A plain ``git clone`` has no ``../shared`` beside it: the tests that read the corpus then skip with
one line saying so, and every other test runs.  Under CI (``CI=true``) the corpus must be there
and those tests must run: ``tests/conftest.py`` turns a missing corpus or a skipped corpus test
into a failed run, so a broken checkout of ``shared/`` can never turn the round-trip proof green
by skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# KAV4MS_CORPUS points elsewhere (a packager's copy); default: the steering repo's shared/ beside us.
CORPUS = Path(os.environ.get("KAV4MS_CORPUS", REPO.parent / "shared" / "corpus"))
SKIP_REASON = f"shared corpus not found at {CORPUS} (a bare clone; CI provides ../shared/corpus)"
MARK = "corpus"


def available() -> bool:
    """Whether the corpus directory is present (it is read in place, never copied)."""
    return CORPUS.is_dir()


def cases(kind: str, keep: Callable[[Path], bool] = Path.is_dir) -> list[str]:
    """Sorted case names under ``CORPUS/kind`` that ``keep`` accepts; [] when there is no corpus."""
    d = CORPUS / kind
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if keep(p))


def params(kind: str, keep: Callable[[Path], bool] = Path.is_dir) -> list[object]:
    """``pytest.mark.parametrize`` values for the corpus cases of ``kind``.

    Without a corpus this is one parameter that skips with the reason, so the test still appears
    in the report (and in CI's "corpus tests skipped" check) instead of vanishing as an empty set.
    """
    found = cases(kind, keep)
    if found:
        return [pytest.param(name, marks=pytest.mark.corpus) for name in found]
    return [pytest.param(f"{kind}-corpus-missing", marks=[pytest.mark.corpus, pytest.mark.skip(reason=SKIP_REASON)])]


def require() -> Path:
    """The corpus root, or skip the calling test with the reason (for tests not parametrized by case)."""
    if not available():
        pytest.skip(SKIP_REASON)
    return CORPUS
