"""Span operations of the configuration editor (find, remove, restore a key; drop an emptied
section): the one reader of kav4mailservers.conf that kavsetup's uninstall also uses."""

from __future__ import annotations

from runtime.config import editor

CONTINUED = ("[smtpscanner.general]\r\n;Protocol=smtp\r\nForwardMailer=smtp: (a -bs \\\r\n  -C b)\r\n"
             "EHL0supportXFORWARD=no")


def test_find_reads_continuations_aliases_and_spellings() -> None:
    assert editor.key_value(CONTINUED, "smtpscan.general", "ForwardMailer") == "smtp: (a -bs -C b)"
    assert editor.key_value(CONTINUED, "smtpscan.general", "EHLOsupportXFORWARD") == "no"
    assert editor.key_value(CONTINUED, "smtpscan.general", "Protocol") is None  # ';' comment
    assert editor.key_lines(CONTINUED, "smtpscan.general", "ForwardMailer") == [
        "ForwardMailer=smtp: (a -bs \\\r\n", "  -C b)\r\n"]


def test_remove_and_restore_whole_spans() -> None:
    removed = editor.replace_key(CONTINUED, "smtpscan.general", "ForwardMailer", [])
    assert removed == "[smtpscanner.general]\r\n;Protocol=smtp\r\nEHL0supportXFORWARD=no"
    lines = editor.key_lines(CONTINUED, "smtpscan.general", "ForwardMailer")
    assert editor.replace_key(removed, "smtpscan.general", "ForwardMailer", []) == removed
    ours = editor.apply_assignments(CONTINUED, [editor.normalise("smtpscan.general", "ForwardMailer", "smtp:h:1")])
    assert editor.replace_key(ours, "smtpscan.general", "ForwardMailer", lines) == CONTINUED


def test_restored_last_line_without_newline_gets_one_when_more_follows() -> None:
    text = "[smtpscan.general]\nProtocol=lmtp\nListenAddress=stdio\n"
    assert editor.replace_key(text, "smtpscan.general", "Protocol", ["Protocol=smtp"]) == (
        "[smtpscan.general]\nProtocol=smtp\nListenAddress=stdio\n")


def test_drop_section_only_when_no_key_is_left() -> None:
    text = "[path]\nBasesPath=/x\n\n[smtpscan.group:a]\n# kept\nRecipients=.*\n"
    assert editor.has_section(text, "smtpscan.group:a")
    assert editor.drop_section_if_empty(text, "smtpscan.group:a") == text
    empty = editor.replace_key(text, "smtpscan.group:a", "Recipients", [])
    assert editor.drop_section_if_empty(empty, "smtpscan.group:a") == "[path]\nBasesPath=/x\n# kept\n"
    assert editor.drop_section_if_empty(text, "smtpscan.group:nope") == text
