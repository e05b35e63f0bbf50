"""kav4mailservers.conf written by an earlier version (or by hand from the guide) may use the
guide's spellings: ``[smtpscanner.general]``, ``EHL0...`` with a zero.  Install must set the key
the loader reads, not add a second spelling beside it, and uninstall must give the admin's line
back as it was."""

from __future__ import annotations

from pathlib import Path

from kavsetup.integrate.edits import IniValues, Plan
from kavsetup.integrate.files import Root
from kavsetup.integrate.transaction import Transaction
from runtime.config import load_config
from tests.support.integration import diff_snapshots, snapshot

ADMIN_FILE = "# my notes\r\n[smtpscanner.general]\r\nEHL0supportXFORWARD=no\r\nProtocol=lmtp\r\n"


def test_guide_spellings_are_set_in_place_and_restored(tmp_path: Path) -> None:
    conf = tmp_path / "etc/kav.conf"
    conf.parent.mkdir(parents=True)
    conf.write_bytes(ADMIN_FILE.encode())
    original = snapshot(tmp_path)
    plan = Plan("none", (IniValues("/etc/kav.conf", (("smtpscan.general", "EHLOsupportXFORWARD", "yes"),
                                               ("smtpscan.general", "Protocol", "smtp"))),))
    assert Transaction(Root(tmp_path)).apply(plan).ok
    text = conf.read_bytes().decode()
    assert text == "# my notes\r\n[smtpscanner.general]\r\nEHLOsupportXFORWARD=yes\r\nProtocol=smtp\r\n"
    cfg = load_config(conf)
    assert cfg.get("smtpscan.general", "EHLOsupportXFORWARD") is True
    assert not any("set again" in str(w) for w in cfg.warnings)
    assert Transaction(Root(tmp_path)).uninstall().ok
    assert diff_snapshots(original, snapshot(tmp_path)) == []
