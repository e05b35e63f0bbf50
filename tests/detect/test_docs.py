"""docs/detect.md documents every key the JSON output carries (so the schema cannot drift)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kavsetup.detect import SCHEMA_VERSION, detect

DOC = Path(__file__).resolve().parents[2] / "docs" / "detect.md"


def keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from keys(v)
    elif isinstance(value, list):
        for item in value:
            yield from keys(item)


@pytest.mark.root
def test_every_json_key_is_documented(fixture_root: Callable[[str], Path]) -> None:
    text = DOC.read_text()
    assert f"`schema: {SCHEMA_VERSION}`" in text
    seen: set[str] = set()
    for name in ("rocky-9-postfix-sendmail", "rocky-9-exim", "freebsd-5.3-qmail"):
        seen |= set(keys(json.loads(detect(fixture_root(name)).to_json())))
    kinds = {json.loads(detect(fixture_root(n)).to_json())["mtas"][0]["details"]["type"]
             for n in ("rocky-9-postfix-sendmail", "rocky-9-exim", "freebsd-5.3-qmail")}
    assert kinds == {"PostfixInfo", "EximInfo", "SendmailInfo"}
    missing = sorted(k for k in seen if f'"{k}"' not in text)
    assert not missing, f"keys not documented in {DOC.name}: {missing}"


def test_readme_summary_names_every_top_level_key() -> None:
    """The README's compact schema (issue 3: "the JSON schema is documented in the README") lists
    every top-level, os, mta and users key the command prints."""
    readme = (DOC.parents[1] / "README.md").read_text()
    block = readme.split("### `kavsetup detect --json` (schema 1)", 1)[1].split("```", 2)[1]
    data = json.loads(detect(Path("/")).to_json())
    wanted = set(data) | set(data["users"]) | {k for m in data["mtas"] for k in m if k != "details"}
    wanted |= {"id", "version", "family", "init", "pkg_format", "pretty", "source"}
    missing = sorted(k for k in wanted if f'"{k}"' not in block)
    assert not missing, f"README schema misses {missing}"
