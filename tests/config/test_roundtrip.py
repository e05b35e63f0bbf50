"""Load + write of an unchanged file is byte-identical; edits touch only their lines."""

from __future__ import annotations

import os
import stat

import pytest

from kavsetup.cli import main
from runtime.config import apply_assignments, load_config, loads_config, parse_assignment, set_values
from runtime.config.editor import normalise

SAMPLES = {
    "comments": "# top comment\n\n[path]\n# why\nBasesPath=/var/db/bases\n; semicolon comment\n",
    "crlf": "[path]\r\nBasesPath=/var/db/bases\r\n\r\n[smtpscan.limits]\r\nMaxCheckTime=30\r\n",
    "tabs": "[path]\n\tBasesPath\t=\t/var/db/bases\t\n[locale]\nDateFormat = %d.%m.%Y\n",
    "repeated": "[smtpscan.group:g]\nRecipients=.*@a\\.com\nRecipients=.*@b\\.com\nCheck=yes\n",
    "no-trailing-newline": "[smtpscan.general]\nProtocol=smtp",
    "quoted": '[smtpscan.notify]\nSubject="Virus found: %VIRUSNAME%"\n',
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_unchanged_file_round_trips_byte_for_byte(name, tmp_path):
    text = SAMPLES[name]
    loads_config(text, name)  # valid
    assert apply_assignments(text, []) == text
    path = tmp_path / "k.conf"
    path.write_bytes(text.encode())
    before = path.stat()
    assert set_values(path, []) is False
    assert path.read_bytes() == text.encode()
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def test_setting_the_same_value_leaves_the_file_identical(tmp_path, default_text):
    path = tmp_path / "k.conf"
    path.write_text(default_text)
    assert (
        main(
            [
                "config",
                "set",
                str(path),
                "aveserver.options.DetachFromTerminal=yes",
                "smtpscan.group:default.Check=true",
            ]
        )
        == 0
    )
    assert path.read_text() == default_text


def test_set_changes_one_line_and_keeps_crlf_mode_and_comments(tmp_path):
    text = SAMPLES["crlf"].replace("[path]", "# keep me\r\n[path]")
    path = tmp_path / "k.conf"
    path.write_bytes(text.encode())
    os.chmod(path, 0o640)
    assert main(["config", "set", str(path), "smtpscan.limits.MaxCheckTime=90"]) == 0
    out = path.read_bytes().decode()
    assert out == text.replace("MaxCheckTime=30", "MaxCheckTime=90")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_set_adds_missing_key_in_its_section_and_missing_section_at_end(tmp_path):
    path = tmp_path / "k.conf"
    path.write_text(SAMPLES["no-trailing-newline"])
    set_values(path, {"smtpscan.general.EHLOsupportDSN": True, "locale.DateFormat": "%y/%m/%d"})
    assert path.read_text() == (
        "[smtpscan.general]\nProtocol=smtp\nEHLOsupportDSN=yes\n\n[locale]\nDateFormat=%y/%m/%d\n"
    )
    assert load_config(path).get("smtpscan.general", "EHLOsupportDSN") is True


def test_booleans_are_written_as_yes_no_and_lists_collapse(tmp_path):
    path = tmp_path / "k.conf"
    path.write_text(SAMPLES["repeated"])
    set_values(
        path,
        [
            parse_assignment("smtpscan.group:g.Recipients=.*@c\\.com,.*@d\\.com"),
            parse_assignment("smtpscan.group:g.Check=off"),
        ],
    )
    assert path.read_text() == "[smtpscan.group:g]\nRecipients=.*@c\\.com,.*@d\\.com\nCheck=no\n"


def test_a_bad_value_writes_nothing(tmp_path, capsys):
    path = tmp_path / "k.conf"
    path.write_text(SAMPLES["comments"])
    assert main(["config", "set", str(path), "path.BasesPath=relative/dir"]) == 1
    assert capsys.readouterr().err.strip() == f"{path}: [path] BasesPath: 'relative/dir' is not an absolute path"
    assert path.read_text() == SAMPLES["comments"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.conf"]  # no temp file left behind


def test_canonical_spelling_written_for_an_alias():
    a = normalise("smtpscanner.general", "EHL0supportDSN", "on")
    assert (a.section, a.key, a.value) == ("smtpscan.general", "EHLOsupportDSN", "yes")
