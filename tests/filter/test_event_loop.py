"""smtpscanner's event loop (runtime/filter/serve.py ``run_loop``): uvloop when it is importable, in a
way that also works with Debian bookworm's python3-uvloop 0.17 (which has no ``uvloop.run``), and
plain asyncio otherwise."""

from __future__ import annotations

import asyncio
import sys

import pytest

from runtime.filter.serve import run_loop


async def _loop_kind() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_is_used_without_uvloop_run(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    # What bookworm's 0.17 lacks: the loop must still be uvloop's, and the result passed back.
    monkeypatch.delattr(uvloop, "run", raising=False)
    assert run_loop(_loop_kind()).startswith("uvloop")


def test_plain_asyncio_when_uvloop_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError, as on a bare host
    assert run_loop(_loop_kind()).startswith("asyncio")
