"""Fixtures for the kavscanner tests: a real database, a config writer, the real command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.scanner import env_for, make_bases, run


@dataclass
class Kit:
    """Bases, engine cache and a kav4mailservers.conf for one test; ``scan`` runs kavscanner."""

    root: Path
    sections: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bases = make_bases(self.root / "kit" / "bases")
        self.cache = self.root / "kit" / "cache"
        self.ichecker = self.root / "kit" / "ichecker.db"
        self.report = self.root / "kit" / "report.log"

    def config(self, **sections: dict[str, str]) -> Path:
        # LocalSocketPath: never the machine's own aveserver (another database); tests that want
        # the SCANFD backend start one and point this at it.
        base = {"path": {"BasesPath": str(self.bases), "IcheckerDbFile": str(self.ichecker),
                         "LocalSocketPath": str(self.root / "kit" / "no-aveserver.sock")},
                "scanner.report": {"ReportFileName": str(self.report)}}
        for name, keys in sections.items():
            base.setdefault(name.replace("__", "."), {}).update(keys)
        text = "".join(f"[{s}]\n" + "".join(f"{k}={v}\n" for k, v in keys.items()) + "\n" for s, keys in base.items())
        conf = self.root / "kit" / "kav4mailservers.conf"
        conf.write_text(text)
        return conf

    def env(self, **extra: str) -> dict[str, str]:
        return env_for(cache=self.cache, **extra)

    def scan(self, *args: str, conf: Path | None = None, **kw):  # type: ignore[no-untyped-def]
        conf = conf or self.config()
        return run(["-c", str(conf), *args], self.env(), **kw)


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)
