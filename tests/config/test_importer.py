"""Import from 5.0 and 4.x installations (guide 1.1): settings carried over, the rest reported."""

from __future__ import annotations

from kavsetup.cli import main
from kavsetup.importer import convert_mask, find_and_import
from runtime.config import loads_config

CONF_50 = """# kav4mailservers.conf of a 5.0 installation
[path]
BasesPath=/var/db/kav/5.0/kav4mailservers/bases
[smtpscan.general]
ForwardMailer=smtp:127.0.0.1:10026
NotifyFromAddress=av@example.com
[smtpscan.group:sales]
Recipients=*@sales.example.com
Recipients=boss@example.com
Senders=.*@partner\\.example\\.org
Check=true
RecipientAction=remove
CuredRecipientAction=cured
KeeperMode=2
[smtpscan.group:default]
Check=true
AdminNotify=false
"""


def test_masks_wildcards_become_regexes():
    assert convert_mask("*@sales.example.com") == ".*@sales\\.example\\.com"
    assert convert_mask("user?@x.org") == "user.@x\\.org"
    assert convert_mask(".*@partner\\.example\\.org") == ".*@partner\\.example\\.org"
    assert convert_mask("^a[0-9]+@b\\.c$") == "^a[0-9]+@b\\.c$"


def test_5_0_installation_is_found_converted_and_reported(tmp_path, capsys):
    conf = tmp_path / "etc/kav/5.0/kav4mailservers/kav4mailservers.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(CONF_50)
    result = find_and_import(tmp_path)
    assert result.version == "5.0"
    sales = result.settings["smtpscan.group:sales"]
    assert sales["Recipients"] == [".*@sales\\.example\\.com", "boss@example\\.com"]
    assert sales["Check"] is True
    reported = [str(m) for m in result.messages]
    assert any(":14: [smtpscan.group:sales] KeeperMode: key unknown to 5.5" in m for m in reported)
    assert any(":3: [path] BasesPath: /var/db/kav/5.0/kav4mailservers/bases belongs to the old" in m for m in reported)

    out = tmp_path / "new.conf"
    assert main(["config", "import", "--root", str(tmp_path), "-o", str(out)]) == 0
    cfg = loads_config(out.read_text())
    assert cfg.warnings == []
    assert cfg.get("path", "BasesPath") == "/var/db/kav/5.5/kav4mailservers/bases"
    assert cfg.get("smtpscan.general", "NotifyFromAddress") == "av@example.com"
    assert cfg.select_group("x@partner.example.org", "joe@sales.example.com").name == "sales"
    assert cfg.select_group("x@elsewhere.org", "joe@sales.example.com").name == "default"
    assert cfg.group("sales").cure
    assert cfg.group("default").setting("Infected", "AdminNotify") is False
    assert "KeeperMode" in capsys.readouterr().err
    assert oct(out.stat().st_mode & 0o777) == "0o640"


def test_4x_profile_switches(tmp_path):
    avp = tmp_path / "opt/AVP"
    avp.mkdir(parents=True)
    (avp / "AvpUnix.ini").write_text("[AVP32]\nDefaultProfile=/opt/AVP/defUnix.prf\nUpdatePath=/opt/AVP\n")
    (avp / "defUnix.prf").write_text(
        "[Object]\nNames=*/home;*/tmp\nPacked=Yes\nArchives=No\nSubDirectories=No\nInfectedAction=2\nCodeAnalyser=Yes\n"
    )
    result = find_and_import(tmp_path)
    assert result.version == "4.x"
    assert result.settings["scanner.options"] == {"Packed": True, "Archives": False, "Recursion": False, "Cure": True}
    reported = [str(m) for m in result.messages]
    assert any(":2: [Object] Names: no 5.5 equivalent" in m for m in reported)
    assert any(":7: [Object] CodeAnalyser: no 5.5 equivalent" in m for m in reported)


def test_nothing_to_import_says_so(tmp_path, capsys):
    assert main(["config", "import", "--root", str(tmp_path)]) == 1
    assert "no 4.x or 5.0 installation found" in capsys.readouterr().err
