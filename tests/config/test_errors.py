"""Bad input: one FILE:LINE message per problem, exit 1, nothing dropped silently."""

from __future__ import annotations

import subprocess
import sys

from kavsetup.cli import main
from runtime.config import ConfigError, loads_config

BAD = """[aveserver.options]
DetachFromTermnal=yes
StartupMode=fast
[smtpscan.group:default]
Check=perhaps
Recipients=.*@(example\\.com
[smtpscan.report]
ReportFilePermission=0986
"""


def test_four_mistakes_four_messages(tmp_path, capsys):
    path = tmp_path / "bad.conf"
    path.write_text(BAD)
    assert main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4, err
    assert err[0] == f"{path}:2: [aveserver.options] DetachFromTermnal: unknown key (did you mean DetachFromTerminal?)"
    assert err[1].startswith(f"{path}:5: [smtpscan.group:default] Check: 'perhaps' is not a boolean")
    assert err[2].startswith(f"{path}:6: [smtpscan.group:default] Recipients: bad regular expression")
    assert err[3].startswith(f"{path}:8: [smtpscan.report] ReportFilePermission: '0986' is not an octal permission")


def test_the_command_line_tool_exits_1(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text(BAD)
    proc = subprocess.run(
        [sys.executable, "-m", "kavsetup.cli", "config", "check", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 4


def test_unknown_section_and_junk_and_orphan_key():
    text = "Orphan=1\n[aveserver.option]\nX=1\nthis is not ini\n"
    try:
        loads_config(text, "f.conf")
    except ConfigError as exc:
        lines = [str(m) for m in exc.messages]
    else:  # pragma: no cover
        raise AssertionError("accepted")
    assert lines[0] == "f.conf:1: Orphan: key outside any [section]"
    assert any(
        line.startswith("f.conf:2: [aveserver.option]: unknown section (did you mean aveserver.options?)")
        for line in lines
    )
    assert any(line.startswith("f.conf:4: cannot parse 'this is not ini'") for line in lines)


def test_unreadable_file_is_one_line(tmp_path, capsys):
    assert main(["config", "check", str(tmp_path / "missing.conf")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{tmp_path / 'missing.conf'}: cannot read: No such file or directory"]


def test_header_injection_through_an_address_is_refused():
    try:
        loads_config("[smtpscan.general]\nNotifyFromAddress=a@b>\n", "f")
    except ConfigError as exc:
        assert "NotifyFromAddress" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("accepted")


def test_posix_classes_are_understood():
    cfg = loads_config("[smtpscan.group:digits]\nRecipients=^[[:digit:]]+@example\\.com$\n", "f")
    g = cfg.group("digits")
    assert g.matches("x@y", "123@example.com") and not g.matches("x@y", "abc@example.com")


def test_comma_inside_a_regex_is_not_a_separator():
    cfg = loads_config("[smtpscan.group:g]\nRecipients=^a{1,3}@x\\.com$,b@y\n", "f")
    assert cfg.group("g").get("Recipients") == ["^a{1,3}@x\\.com$", "b@y"]
