"""Helpers for the configuration tests: the default file and merging a guide example into it."""

from __future__ import annotations

import pytest

from kavsetup.conffile import render_config
from runtime.config import KavConfig, loads_config
from runtime.config.editor import apply_assignments, normalise
from runtime.config.lexer import Document


def merge(text: str, example: str, section: str | None = None) -> str:
    """Load a guide example into a configuration text the way an admin pastes it: every key of
    the example replaces (or is added to) its section; a key repeated in the example is a list."""
    doc = Document.parse(example)
    collected: dict[tuple[str, str], list[str]] = {}
    for e in doc.entries:
        if e.kind == "junk":
            raise AssertionError(f"example line does not parse: {e.value!r}")
        if e.kind != "key":
            continue
        sec = e.section or section
        assert sec, f"example key {e.name} has no section"
        collected.setdefault((sec, e.name), []).append(e.value)
    assignments = [normalise(sec, key, ",".join(vals)) for (sec, key), vals in collected.items()]
    return apply_assignments(text, assignments)


@pytest.fixture(scope="session")
def default_text() -> str:
    return render_config()


@pytest.fixture
def with_example(default_text: str):
    def load(example: str, section: str | None = None) -> KavConfig:
        merged = merge(default_text, example, section)
        cfg = loads_config(merged, filename="kav4mailservers.conf")
        assert [str(w) for w in cfg.warnings] == []  # "checks clean": no error and no warning
        return cfg

    return load
