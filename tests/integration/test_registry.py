"""Every kind of MTA detection knows has one integration module with the whole protocol, and the
MTA-agnostic layers never name a kind (issue 10: one home per MTA)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from kavsetup.detect.model import MTAKind
from kavsetup.mta import MODULES, Integration, integration

KAVSETUP = Path(__file__).resolve().parents[2] / "kavsetup"


def test_each_kind_has_a_module_with_the_whole_protocol() -> None:
    assert set(MODULES) == set(MTAKind)
    wanted = {name: [p for p in inspect.signature(fn).parameters if p != "self"]
              for name, fn in vars(Integration).items() if inspect.isfunction(fn) and not name.startswith("_")}
    assert set(wanted) == {"from_config", "site_facts", "plan", "verify", "after_change"}
    for kind in MTAKind:
        module = integration(kind)
        for name, params in wanted.items():
            assert list(inspect.signature(getattr(module, name)).parameters) == params, (kind, name)


def test_only_the_registry_model_and_detection_name_a_kind() -> None:
    naming = {str(p.relative_to(KAVSETUP)) for p in KAVSETUP.rglob("*.py")
              if re.search(r"\bMTAKind\.", p.read_text())}
    assert {p for p in naming if not p.startswith("detect/")} == {"mta/__init__.py", "commands/detect.py"}
