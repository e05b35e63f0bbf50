"""Every configuration example printed in the guide, loaded into the default file: it checks
clean and the effective values are what the guide says they are."""

from __future__ import annotations

import pytest

from runtime.config import ConfigError, loads_config


def test_4_4_5_integration_settings(with_example):
    # "ForwardMailer=smtp: (/usr/sbin/sendmail -bs \" continued on the next line, as printed.
    cfg = with_example(
        "[smtpscan.general]\n"
        "NotifyFromAddress=antivirus@example.com\n"
        "ForwardMailer=smtp: (/usr/sbin/sendmail -bs \\\n"
        "-C /etc/mail/sendmail.cf)\n"
        "[smtpscan.group:default]\nAdminAddress=admin@example.com\nAdminNotify=yes\n"
        "[smtpscan.limits]\nMaxCheckTime=60\n"
    )
    assert cfg.get("smtpscan.general", "NotifyFromAddress") == "antivirus@example.com"
    assert cfg.get("smtpscan.general", "ForwardMailer") == "smtp: (/usr/sbin/sendmail -bs -C /etc/mail/sendmail.cf)"
    assert cfg.group("default").get("AdminAddress") == "admin@example.com"
    assert cfg.group("default").setting("Infected", "AdminNotify") is True
    assert cfg.get("smtpscan.limits", "MaxCheckTime") == 60


@pytest.mark.parametrize(
    "mailer",
    [
        "smtp:localhost:25",
        "lmtp:(local.mail -l)",
        "qmail: (/var/qmail/bin/qmail-queue)",
        "smtp:localhost:10026",
        "smtp: (exim -bs -C/etc/exim/exim.conf)",
    ],
)
def test_4_4_5_forward_mailers(with_example, mailer):
    cfg = with_example(f"ForwardMailer={mailer}\n", "smtpscan.general")
    assert cfg.get("smtpscan.general", "ForwardMailer") == mailer


def test_5_1_2_cron_updates(with_example):
    cfg = with_example("[updater.options]\nKeepSilent=yes\n[updater.report]\nAppend=yes\nReportLevel=1\n")
    assert cfg.get("updater.options", "KeepSilent") is True
    assert cfg.get("updater.report", "Append") is True
    assert cfg.get("updater.report", "ReportLevel") == 1


def test_5_1_4_local_update_source(with_example):
    cfg = with_example(
        "[updater.options]\nUpdateServerUrl=/mnt/bases\nUseUpdateServerUrl=yes\nUseUpdateServerUrlOnly=no\n"
    )
    assert cfg.section("updater.options")["UpdateServerUrl"] == "/mnt/bases"
    assert cfg.get("updater.options", "UseUpdateServerUrl") is True
    assert cfg.get("updater.options", "UseUpdateServerUrlOnly") is False


GROUP_5_2_1 = """[smtpscanner.group:default]
Check=yes
AdminAddress=admin@example.com
AdminNotify=yes
AdminAction=unchanged
SenderNotify=yes
RecipientNotify=yes
RecipientAttachReport=yes
RecipientAction=remove
CuredRecipientNotify=yes
CuredRecipientAttachReport=yes
CuredRecipientAction=cured
"""


def test_5_2_1_clean_and_disinfected(with_example):
    cfg = with_example(
        GROUP_5_2_1 + "[smtpscan.report]\nShowOk=yes\nReportFileName=/tmp/report.log\nReportFilePermission=0660\n"
    )
    # The guide's [smtpscanner.group:default] spelling is accepted with a warning, written canonically.
    assert any("accepted as [smtpscan.group:default]" in str(w) for w in loads_config(GROUP_5_2_1).warnings)
    g = cfg.group("default")
    assert g.cure is True
    for status in ("Infected", "Suspicious", "Corrupted", "Error", "Warning"):
        assert g.setting(status, "RecipientAction") == "remove"
        assert g.setting(status, "AdminAction") == "unchanged"
        assert g.setting(status, "SenderNotify") is True
    assert g.setting("Cured", "RecipientAction") == "cured"
    assert cfg.get("smtpscan.report", "ShowOk") is True
    assert cfg.get("smtpscan.report", "ReportFileName") == "/tmp/report.log"
    assert cfg.get("smtpscan.report", "ReportFilePermission") == 0o660


QUARANTINE_BODY = """Check=yes
QuarantinePath=/var/db/Quarantine
Quarantine=yes
InfectedQuarantine=yes
SuspiciousQuarantine=yes
CorruptedQuarantine=yes
ErrorQuarantine=yes
ProtectedQuarantine=yes
AdminAddress=admin@example.com
AdminNotify=yes
AdminAction=unchanged
SenderNotify=yes
RecipientNotify=yes
RecipientAttachReport=yes
RecipientAction=remove
CuredRecipientNotify=yes
CuredRecipientAttachReport=yes
CuredRecipientAction=cured
"""


def test_5_2_2_deliver_all_to_urgent(with_example):
    # The guide gives the urgent group no masks; a real site names its members (here by domain).
    cfg = with_example(
        "[smtpscan.group:default]\n" + QUARANTINE_BODY + "[smtpscan.group:urgent]\n"
        "Recipients=.*@urgent\\.example\\.com\nCheck=yes\nQuarantine=no\nAdminAddress=admin@example.com\n"
        "AdminNotify=yes\nAdminAction=unchanged\nSenderNotify=yes\nRecipientNotify=yes\n"
        "RecipientAttachReport=yes\nRecipientAction=unchanged\n"
    )
    default, urgent = cfg.group("default"), cfg.group("urgent")
    assert [g.name for g in cfg.groups] == ["kavadministrators", "urgent", "default"]
    assert cfg.select_group("a@x.org", "boss@urgent.example.com").name == "urgent"
    assert cfg.select_group("a@x.org", "clerk@example.com").name == "default"
    assert default.cure and not urgent.cure
    for status in ("Infected", "Suspicious", "Corrupted", "Error", "Protected", "CureFailed"):
        assert default.setting(status, "Quarantine") is True
        assert urgent.setting(status, "Quarantine") is False
    assert default.get("QuarantinePath") == "/var/db/Quarantine"
    assert urgent.setting("Infected", "RecipientAction") == "unchanged"
    assert urgent.setting("Infected", "RecipientNotify") is True


def test_5_2_3_protected_archives_without_notices(with_example):
    cfg = with_example("ProtectedRecipientAttachReport=no\nProtectedAdminNotify=no\n", "smtpscan.group:default")
    g = cfg.group("default")
    assert g.setting("Protected", "RecipientAttachReport") is False
    assert g.setting("Protected", "AdminNotify") is False
    assert g.setting("Protected", "RecipientAction") == "unchanged"  # delivered by default (5.2.3)
    assert g.setting("Infected", "AdminNotify") is True


def test_5_2_4_block_delivery(with_example):
    cfg = with_example("[smtpscan.group:default]\n" + QUARANTINE_BODY)
    g = cfg.group("default")
    assert g.setting("Protected", "Quarantine") is True
    assert g.setting("Cured", "Quarantine") is False
    assert g.setting("Cured", "RecipientAction") == "cured"
    assert g.setting("Suspicious", "RecipientAction") == "remove"


def test_5_2_5_filter_by_attachment_type(with_example):
    users = """[smtpscan.group:users]
Recipients=.*@users\\.example\\.com
Check=yes
QuarantinePath=/var/db/Quarantine
Quarantine=yes
AdminAddress=admin@example.com
AdminNotify=yes
AdminAction=unchanged
SenderNotify=yes
RecipientNotify=yes
RecipientAttachReport=yes
RecipientAction=remove
FilterByName=.*\\.exe$
FilteredQuarantine=yes
FilteredRecipientNotify=yes
CuredRecipientNotify=yes
CuredRecipientAttachReport=yes
CuredRecipientAction=cured
ProtectedRecipientNotify=yes
ProtectedRecipientAction=unchanged
ProtectedRecipientAttachReport=no
ProtectedSenderNotify=no
ProtectedAdminNotify=no
"""
    default = """Check=yes
QuarantinePath=/var/db/Quarantine
Quarantine=yes
InfectedQuarantine=yes
SuspiciousQuarantine=yes
CorruptedQuarantine=yes
ErrorQuarantine=yes
AdminAddress=admin@example.com
AdminNotify=yes
AdminAction=unchanged
SenderNotify=yes
RecipientNotify=yes
RecipientAttachReport=no
RecipientAction=remove
ProtectedRecipientNotify=yes
ProtectedRecipientAttachReport=yes
ProtectedRecipientAction=unchanged
CuredRecipientNotify=yes
CuredRecipientAttachReport=yes
CuredRecipientAction=cured
"""
    cfg = with_example(users + "[smtpscan.group:default]\n" + default)
    u, d = cfg.group("users"), cfg.group("default")
    assert u.filtered_name("invoice.EXE") and u.filtered_name("a.exe")
    assert not u.filtered_name("a.exe.txt") and not d.filtered_name("a.exe")
    assert u.setting("Filtered", "Quarantine") is True
    assert u.setting("Infected", "Quarantine") is False
    assert u.setting("Protected", "RecipientAction") == "unchanged"
    assert u.setting("Protected", "SenderNotify") is False and u.setting("Infected", "SenderNotify") is True
    assert d.setting("Protected", "Quarantine") is False  # delivered with a notice instead
    assert d.setting("Infected", "RecipientAttachReport") is False
    assert d.setting("Protected", "RecipientAttachReport") is True
    assert cfg.select_group("x@y.org", "joe@users.example.com") is not None
    assert cfg.select_group("x@y.org", "joe@users.example.com").name == "users"


def test_6_1_2_cure_mode_from_any_cured_key(with_example):
    cfg = with_example("[smtpscan.group:account]\nCheck=yes\nCuredRecipientNotify=yes\n")
    g = cfg.group("account")
    assert g.check and g.cure
    assert g.setting("Cured", "RecipientNotify") is True
    # Per-status notify keys mean "only these statuses" (6.1.4).
    assert g.setting("Infected", "RecipientNotify") is False
    plain = with_example("[smtpscan.group:plain]\nCheck=yes\n").group("plain")
    assert plain.check and not plain.cure


def test_6_1_3_actions_and_quarantine(with_example):
    cfg = with_example(
        "AdminAction=unchanged\nRecipientAction=remove\nCuredRecipientAction=cured\n"
        "QuarantinePath=/var/db/Quarantine\nQuarantine=yes\nSuspiciousQuarantine=yes\n"
        "CorruptedQuarantine=yes\nErrorQuarantine=yes\n",
        "smtpscan.group:default",
    )
    g = cfg.group("default")
    assert g.setting("Warning", "AdminAction") == "unchanged"
    assert g.setting("Warning", "RecipientAction") == "remove"
    assert g.setting("Cured", "RecipientAction") == "cured"
    assert [s for s in ("Infected", "Suspicious", "Corrupted", "Error") if g.setting(s, "Quarantine")] == [
        "Suspicious",
        "Corrupted",
        "Error",
    ]


def test_6_1_4_notifications(with_example):
    cfg = with_example(
        "[smtpscan.group:notes]\nInfectedRecipientNotify=yes\nCuredRecipientNotify=yes\n"
        "CorruptedRecipientNotify=yes\nSenderNotify=yes\nAdminNotify=yes\n"
    )
    g = cfg.group("notes")
    notified = [
        s
        for s in ("Infected", "Suspicious", "Warning", "Corrupted", "Protected", "Error", "Cured")
        if g.setting(s, "RecipientNotify")
    ]
    assert notified == ["Infected", "Corrupted", "Cured"]
    assert g.setting("CureFailed", "RecipientNotify") is True  # treated as infected (6.2.2)
    assert all(g.setting(s, "SenderNotify") and g.setting(s, "AdminNotify") for s in ("Suspicious", "Error"))


def test_6_2_4_backup_mode_actions(with_example):
    actions = (
        "OnInfected=MovePath /tmp/infected\nOnSuspicion=MovePath /tmp/suspicious\nOnWarning=MovePath /tmp/warning\n"
    )
    cfg = with_example("[scanner.options]\nCure=yes\n[scanner.object]\n" + actions + "[scanner.container]\n" + actions)
    assert cfg.get("scanner.options", "Cure") is True
    for sec in ("scanner.object", "scanner.container"):
        assert cfg.get(sec, "OnInfected") == [("movepath", "/tmp/infected")]
        assert cfg.get(sec, "OnWarning") == [("movepath", "/tmp/warning")]


def test_5_3_4_several_actions_joined_with_semicolons(with_example):
    cfg = with_example(
        "OnInfected=exec mv %FULLPATH%/FILENAME% /tmp/infected/%FILENAME%; chmod -x /tmp/infected/%FILENAME%\n",
        "scanner.object",
    )
    assert cfg.get("scanner.object", "OnInfected") == [
        ("exec", "mv %FULLPATH%/FILENAME% /tmp/infected/%FILENAME%; chmod -x /tmp/infected/%FILENAME%")
    ]


def test_6_4_aveserver(with_example):
    cfg = with_example("DetachFromTerminal=no\nStartupMode=fast\nLocalSocketPermission=0666\n", "aveserver.options")
    assert cfg.get("aveserver.options", "DetachFromTerminal") is False
    assert cfg.get("aveserver.options", "StartupMode") == "fast"
    assert cfg.get("aveserver.options", "LocalSocketPermission") == 0o666


def test_6_6_postfix_extensions_with_the_guides_zero(with_example):
    example = (
        "[smtpscan.general]\nProtocol=smtp\nEHL0supportDSN=yes\nEHL0support8BITMIME=yes\n"
        "EHL0supportXFORWARD=yes\nEHL0attrsXFORWARD=NAME ADDR PROTO HELO\n"
    )
    cfg = with_example(example)
    assert cfg.get("smtpscan.general", "Protocol") == "smtp"
    assert cfg.get("smtpscan.general", "EHLOsupportDSN") is True
    assert cfg.get("smtpscan.general", "EHLOsupport8BITMIME") is True
    assert cfg.get("smtpscan.general", "EHLOsupportXFORWARD") is True
    assert cfg.get("smtpscan.general", "EHLOattrsXFORWARD") == ["NAME", "ADDR", "PROTO", "HELO"]
    assert sum("canonical spelling" in str(w) for w in loads_config(example).warnings) == 4
    assert cfg.warnings == []  # merged into the file under the canonical EHLO spelling


def test_6_7_locale(with_example):
    cfg = with_example("[locale]\nTimeFormat=%I:%M:%S %P\nDateFormat=%y/%m/%d\n")
    assert cfg.get("locale", "TimeFormat") == "%I:%M:%S %P"
    assert cfg.get("locale", "DateFormat") == "%y/%m/%d"


def test_6_8_3_statistics_continued_line(with_example):
    cfg = with_example("[smtpscan.report]\nAVStatistics=\\\n/var/log/kav/5.5/kav4mailservers/smtpscanner.stat\n")
    assert cfg.get("smtpscan.report", "AVStatistics") == "/var/log/kav/5.5/kav4mailservers/smtpscanner.stat"


def test_6_8_4_x_headers(with_example):
    cfg = with_example("AddXHeaders=no\n", "smtpscan.group:default")
    assert cfg.group("default").get("AddXHeaders") is False
    assert with_example("AddXHeaders=yes\n", "smtpscan.group:default").group("default").get("AddXHeaders")


def test_5_4_1_license_domains_singular_spelling(with_example):
    cfg = with_example("LicenseDomain=example\\.com,.*\\.example\\.org\n", "smtpscan.license")
    assert cfg.get("smtpscan.license", "LicenseDomains") == ["example\\.com", ".*\\.example\\.org"]


def test_a_bad_forward_mailer_is_refused(with_example):
    with pytest.raises(ConfigError) as exc:
        with_example("ForwardMailer=smtp localhost\n", "smtpscan.general")
    assert "ForwardMailer" in str(exc.value)
