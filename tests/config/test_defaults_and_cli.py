"""``kavsetup config defaults|check|show``: the default file holds every section and checks clean."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kavsetup.cli import main
from kavsetup.conffile import render_config
from runtime.config import SECTIONS, load_config, loads_config

REQUIRED = [
    "path",
    "locale",
    "aveserver.options",
    "aveserver.report",
    "smtpscan.general",
    "smtpscan.license",
    "smtpscan.limits",
    "smtpscan.notify",
    "smtpscan.report",
    "smtpscan.group:default",
    "smtpscan.group:kavadministrators",
    "updater.path",
    "updater.options",
    "updater.report",
    "scanner.options",
    "scanner.object",
    "scanner.container",
    "scanner.path",
    "scanner.report",
    "display",
]


def test_defaults_check_clean_and_hold_every_section(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "kavsetup.cli", "config", "defaults"], capture_output=True, text=True, check=True
    ).stdout
    path = tmp_path / "k.conf"
    path.write_text(out)
    assert main(["config", "check", str(path)]) == 0
    cfg = load_config(path)
    assert cfg.warnings == []
    for name in REQUIRED:
        assert f"\n[{name}]\n" in out, name
    # every non-pattern key of the schema is written out with its default
    for sec in SECTIONS:
        if not sec.pattern:
            for key in sec.keys:
                assert cfg.get(sec.name, key.name) == key.default, (sec.name, key.name)


def test_defaults_follow_the_guide(default_text):
    cfg = loads_config(default_text)
    d = cfg.group("default")
    assert d.cure  # 4.1: "the application disinfects them"
    assert d.get("AdminAddress") == "postmaster@localhost"
    assert cfg.get("smtpscan.general", "NotifyFromAddress") == "MAILER-DAEMON@localhost"
    assert cfg.get("aveserver.options", "LocalSocketPermission") == 0o660  # not the guide's 0666 (issue 11)
    assert cfg.get("locale", "DateFormat") == "%d/%m/%y" and cfg.get("locale", "TimeFormat") == "%H:%M:%S"
    assert cfg.select_group("x@y.org", "postmaster@localhost").name == "kavadministrators"
    assert cfg.select_group("<>", "user@example.com").name == "default"


def test_settings_override_defaults_and_bad_answers_name_the_key():
    text = render_config(
        {
            "smtpscan.general": {"ForwardMailer": "smtp:127.0.0.1:10030"},
            "smtpscan.group:sales": {"Recipients": [".*@sales\\.example"], "Check": "yes"},
        }
    )
    cfg = loads_config(text)
    assert cfg.get("smtpscan.general", "ForwardMailer") == "smtp:127.0.0.1:10030"
    assert [g.name for g in cfg.groups] == ["kavadministrators", "sales", "default"]
    with pytest.raises(Exception, match="MaxCheckTime"):
        render_config({"smtpscan.limits": {"MaxCheckTime": "soon"}})


def test_show_json_and_section(tmp_path, capsys, default_text):
    path = tmp_path / "k.conf"
    path.write_text(default_text)
    assert main(["config", "show", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["smtpscan.group:default"]["resolved"]["Cured"]["RecipientAction"] == "cured"
    assert data["path"]["LocalSocketPath"] == "/var/run/aveserver"
    assert main(["config", "show", str(path), "--section", "smtpscanner.limits"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[smtpscan.limits]\nMaxCheckTime=60\n")
