"""Each ``kavsetup`` sub-command imports only what it uses (issue 10: start-up).  Checked by the
modules a fresh interpreter has loaded, not by timing (bench/ is the place for numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.integration import REPO, unpack_journal_fixture

PROBE = """
import json, sys
from kavsetup.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _loaded(*argv: str) -> set[str]:
    p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=REPO,
                       check=False, timeout=60)
    return set(json.loads(p.stderr.strip().splitlines()[-1]))


def test_help_imports_no_command() -> None:
    loaded = _loaded("--help")
    assert not {m for m in loaded if m.startswith(("kavsetup.commands.", "kavsetup.integrate", "runtime"))}


def test_detect_does_not_load_the_installer() -> None:
    loaded = _loaded("detect", "--help")
    assert "kavsetup.commands.detect" in loaded
    assert not {m for m in loaded if m.startswith(("kavsetup.integrate", "kavsetup.mta", "runtime.config"))}


@pytest.mark.root
def test_uninstall_of_an_untouched_root_skips_the_configuration_schema(tmp_path: Path) -> None:
    """A root still exactly as install left it is restored byte for byte: no compiler, no site
    facts, no schema (~0.1 s) are needed."""
    _before, installed = unpack_journal_fixture(tmp_path, "postfix")
    loaded = _loaded("uninstall", "--root", str(installed))
    assert not (installed / "var/lib/kav").exists()
    assert "kavsetup.commands.install" in loaded
    assert not {m for m in loaded if m.startswith(("kavsetup.integrate.plan", "kavsetup.integrate.site",
                                                   "kavsetup.mta.", "runtime.config.schema"))}
