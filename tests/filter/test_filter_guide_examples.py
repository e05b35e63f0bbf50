"""The guide's worked examples (5.2.1-5.2.5, 6.1.2-6.1.4) end to end.

Client: smtplib over TCP -> smtpscanner (process) -> aveserver (process) -> ForwardMailer -> an
SMTP sink on a real socket.  Every assertion is about what arrived at the sink (copies and
notices), what the client was answered, and what is on disk (quarantine, event log).
"""

from __future__ import annotations

import io
import stat
import zipfile

from tests.support.filter import EICAR, PREFIXES, eicar_mail, mail

ADMIN = "admin@example.com"
SENDER = "alice@example.com"
BOB = "bob@example.com"

# 5.2.1 (also the 6.1.3 example of common and per-status actions)
G521 = {"Check": True, "AdminAddress": ADMIN, "AdminNotify": True, "AdminAction": "unchanged",
        "SenderNotify": True, "RecipientNotify": True, "RecipientAttachReport": True, "RecipientAction": "remove",
        "CuredRecipientNotify": True, "CuredRecipientAttachReport": True, "CuredRecipientAction": "cured"}
# 5.2.2 / 5.2.4
QUAR = {"Quarantine": True, "InfectedQuarantine": True, "SuspiciousQuarantine": True,
        "CorruptedQuarantine": True, "ErrorQuarantine": True, "ProtectedQuarantine": True}


def attachment(got, name: str) -> bytes | None:  # noqa: ANN001
    for part in got.msg.walk():
        if part.get_filename() == name:
            return part.get_payload(decode=True)
    return None


def texts(got) -> str:  # noqa: ANN001
    return "\n".join(p.get_payload(decode=True).decode("utf-8", "replace") for p in got.msg.walk()
                     if p.get_content_type() == "text/plain" and p.get_payload(decode=True))


def protected_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        # A fixed timestamp: the test compares two calls' bytes, which a clock tick must not change.
        member = zipfile.ZipInfo("secret.txt", date_time=(2026, 1, 1, 0, 0, 0))
        z.writestr(member, b"not really encrypted, flagged as such")
    data = bytearray(buf.getvalue())
    data[6] |= 1  # local header general purpose flag: encrypted
    cd = data.find(b"PK\x01\x02")
    data[cd + 8] |= 1  # central directory copy of the flag
    return bytes(data)


def test_5_2_1_clean_and_disinfected_delivery(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": G521}, extra={"smtpscan.report": {"ReportFilePermission": "0660"}})
    for kind in PREFIXES:
        st.sink.got.clear()
        replies = st.send(eicar_mail(kind))
        assert replies[BOB][0] == 250, (kind, replies)
        (copy,) = st.sink.deliveries()
        assert copy.rcpts == [BOB] and copy.sender == SENDER
        xav = copy.msg["X-Anti-Virus"]
        assert xav.startswith("kav4mailservers version 5.5/RELEASE, bases: ")  # this project, guide format
        if kind == "clean":
            assert xav.endswith(" clean") and attachment(copy, "report.txt") == b"quarterly numbers\n"
            assert not st.sink.by_notice("")[1:] and len(st.sink.got) == 1
            continue
        name = f"{kind.lower()}.com"
        payload = attachment(copy, name)
        if kind == "CURE":
            assert payload == b"CURE", "CuredRecipientAction=cured delivers the disinfected object"
            assert xav.endswith(" cured")
        else:
            assert payload is None, f"{kind}: RecipientAction=remove"
            assert "was removed from this message" in texts(copy)
        assert "anti-virus report" in texts(copy), "RecipientAttachReport=yes"
        roles = sorted(g.notice.split(";")[0] for g in st.sink.got if g.notice)
        assert roles == ["admin", "recipient", "sender"], (kind, roles)
        (admin,) = st.sink.by_notice("admin")
        assert admin.rcpts == [ADMIN] and admin.sender == ""
        # "Attach unchanged infected objects to the administrator's notifications"
        assert PREFIXES[kind] + EICAR in admin.data.replace(b"\r\n", b"\n") or \
            PREFIXES[kind] + EICAR in b"".join(p.get_payload(decode=True) or b"" for p in admin.msg.walk())
        (snd,) = st.sink.by_notice("sender")
        assert snd.rcpts == [SENDER] and "Action taken" not in texts(snd)
    log = st.log_text()
    assert "group default: OK" in log, "ShowOk=yes logs clean messages"
    assert "CUREFAILED; EICAR-Test-File;" in log and "CURED; EICAR-Test-File (curable)" in log
    assert stat.S_IMODE(st.log.stat().st_mode) == 0o660
    assert st.spool_files() == []
    statlines = [line.split("\t") for line in (st.root / "log" / "smtpscanner.stat").read_text().splitlines()]
    assert [x[1] for x in statlines] == ["OK", "CUREFAILED", "CORRUPTED", "SUSPICIOUS", "WARNING", "ERROR",
                                         "CURED", "CURED"]
    assert statlines[1][2] == "EICAR-Test-File" and statlines[1][3] == SENDER
    # a verdict header forged by the sender is not passed on
    st.sink.got.clear()
    forged = b"X-Anti-Virus: forged, check: 20000101 clean\r\n" + eicar_mail("EICAR")
    st.send(forged)
    (copy,) = st.sink.deliveries()
    assert copy.msg.get_all("X-Anti-Virus") == [copy.msg["X-Anti-Virus"]]
    assert copy.msg["X-Anti-Virus"].endswith(" curefailed")


def test_5_2_2_delivery_of_all_messages_urgent_group(make_stack) -> None:  # noqa: ANN001
    default = {**G521, "QuarantinePath": None, **QUAR}
    urgent = {"Recipients": r"urgent@example\.com", "Check": True, "Quarantine": False, "AdminAddress": ADMIN,
              "AdminNotify": True, "AdminAction": "unchanged", "SenderNotify": True, "RecipientNotify": True,
              "RecipientAttachReport": True, "RecipientAction": "unchanged"}
    st = make_stack({"urgent": urgent, "default": default}, start=False)
    default["QuarantinePath"] = st.quarantine
    st.write({"urgent": urgent, "default": default})
    st.start()
    data = eicar_mail("EICAR")
    replies = st.send(data, rcpts=[BOB, "urgent@example.com"])
    assert all(code == 250 for code, _ in replies.values())
    copies = {tuple(g.rcpts): g for g in st.sink.deliveries()}
    assert set(copies) == {(BOB,), ("urgent@example.com",)}, "recipients split by group"
    assert attachment(copies[(BOB,)], "eicar.com") is None
    assert attachment(copies[("urgent@example.com",)], "eicar.com") == EICAR, "urgent gets infected mail"
    urgent_notes = [g for g in st.sink.by_notice("recipient") if g.rcpts == ["urgent@example.com"]]
    assert urgent_notes, "obligatory notification about possible infection"
    entries = list(st.quarantine.glob("*.kavq"))
    assert len(entries) == 1, "default group quarantines, urgent does not"
    raw = entries[0].read_bytes()
    assert EICAR not in raw and b"bob@example.com" not in raw, "encrypted at rest"
    assert stat.S_IMODE(entries[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((st.quarantine / ".quarantine.key").stat().st_mode) == 0o600
    # Cure for default (Cured* keys present) but not for urgent (no Cured* key: 6.1.2).
    st.sink.got.clear()
    st.send(eicar_mail("CURE"), rcpts=[BOB, "urgent@example.com"])
    copies = {tuple(g.rcpts): g for g in st.sink.deliveries()}
    assert attachment(copies[(BOB,)], "cure.com") == b"CURE"
    assert attachment(copies[("urgent@example.com",)], "cure.com") == b"CURE-" + EICAR
    assert copies[("urgent@example.com",)].msg["X-Anti-Virus"].endswith(" infected")


def test_5_2_3_password_protected_archives(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {"AdminAddress": ADMIN, "ProtectedRecipientAttachReport": False,
                                 "ProtectedAdminNotify": False}})
    data = mail("zip", {"archive.zip": protected_zip()})
    assert st.send(data)[BOB][0] == 250
    (copy,) = st.sink.deliveries()
    assert attachment(copy, "archive.zip") == protected_zip(), "protected archives are delivered by default"
    assert copy.msg["X-Anti-Virus"].endswith(" protected")
    assert "anti-virus report" not in texts(copy), "ProtectedRecipientAttachReport=no"
    assert not st.sink.by_notice("admin"), "ProtectedAdminNotify=no"
    # and with the defaults, the recipient and the administrator are told
    st2 = make_stack({"default": {"AdminAddress": ADMIN}})
    st2.send(data)
    (copy,) = st2.sink.deliveries()
    assert "anti-virus report" in texts(copy) and st2.sink.by_notice("admin")


def test_5_2_4_blocking_delivery_quarantine(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, start=False)
    st.write({"default": {**G521, "QuarantinePath": st.quarantine, **QUAR}})
    st.start()
    quarantined = {}
    for kind in ("EICAR", "SUSP", "CORR", "ERRO", "WARN", "CURE", "DELE", "clean"):
        before = set(st.quarantine.glob("*.kavq")) if st.quarantine.exists() else set()
        assert st.send(eicar_mail(kind))[BOB][0] == 250
        after = set(st.quarantine.glob("*.kavq"))
        quarantined[kind] = len(after - before)
    # Infected (cure failed -> Infected rules), Suspicious, Corrupted, Error are blocked; Warning has
    # no WarningQuarantine key; cured and clean mail is delivered.
    assert quarantined == {"EICAR": 1, "SUSP": 1, "CORR": 1, "ERRO": 1, "WARN": 0, "CURE": 0, "DELE": 0,
                           "clean": 0}
    for copy in st.sink.deliveries():
        for kind in ("eicar.com", "susp.com", "corr.com", "erro.com"):
            assert attachment(copy, kind) is None


def test_5_2_5_filter_by_attachment_name(make_stack) -> None:  # noqa: ANN001
    users = {"Recipients": r".*@users\.example\.com", "Check": True, "Quarantine": True, "AdminAddress": ADMIN,
             "AdminNotify": True, "AdminAction": "unchanged", "SenderNotify": True, "RecipientNotify": True,
             "RecipientAttachReport": True, "RecipientAction": "remove", "FilterByName": r".*\.exe$",
             "FilteredQuarantine": True, "FilteredRecipientNotify": True, "CuredRecipientNotify": True,
             "CuredRecipientAttachReport": True, "CuredRecipientAction": "cured", "ProtectedRecipientNotify": True,
             "ProtectedRecipientAction": "unchanged", "ProtectedRecipientAttachReport": False,
             "ProtectedSenderNotify": False, "ProtectedAdminNotify": False}
    default = {"Check": True, "Quarantine": True, **{k: v for k, v in QUAR.items() if k != "ProtectedQuarantine"},
               "AdminAddress": ADMIN, "AdminNotify": True, "AdminAction": "unchanged", "SenderNotify": True,
               "RecipientNotify": True, "RecipientAttachReport": False, "RecipientAction": "remove",
               "ProtectedRecipientNotify": True, "ProtectedRecipientAttachReport": True,
               "ProtectedRecipientAction": "unchanged", "CuredRecipientNotify": True,
               "CuredRecipientAttachReport": True, "CuredRecipientAction": "cured"}
    st = make_stack({"users": {}, "default": {}}, start=False)
    users["QuarantinePath"] = default["QuarantinePath"] = st.quarantine
    st.write({"users": users, "default": default})
    st.start()
    user = "carol@users.example.com"
    exe = mail("exe", {"setup.exe": b"MZ harmless program", "notes.txt": b"fine\n"})
    assert st.send(exe, rcpts=[user, BOB])[user][0] == 250
    copies = {tuple(g.rcpts): g for g in st.sink.deliveries()}
    assert attachment(copies[(user,)], "setup.exe") is None, "users: .exe filtered out"
    assert attachment(copies[(user,)], "notes.txt") == b"fine\n"
    assert attachment(copies[(BOB,)], "setup.exe") == b"MZ harmless program", "other recipients: not filtered"
    assert copies[(user,)].msg["X-Anti-Virus"].endswith(" filtered")
    assert len(list(st.quarantine.glob("*.kavq"))) == 1, "FilteredQuarantine=yes"
    notes = {(g.notice.split(";")[0], tuple(g.rcpts)) for g in st.sink.got if g.notice}
    assert ("recipient", (user,)) in notes and ("admin", (ADMIN,)) in notes
    # users: an infected object that cannot be cured is removed, the admin gets it unchanged
    st.sink.got.clear()
    st.send(eicar_mail("EICAR"), rcpts=[user])
    (copy,) = st.sink.deliveries()
    assert attachment(copy, "eicar.com") is None
    (admin,) = st.sink.by_notice("admin")
    assert EICAR in b"".join(p.get_payload(decode=True) or b"" for p in admin.msg.walk())
    # default: password-protected files are delivered with a notice to the recipient
    st.sink.got.clear()
    st.send(mail("zip", {"a.zip": protected_zip()}), rcpts=[BOB])
    (copy,) = st.sink.deliveries()
    assert attachment(copy, "a.zip") == protected_zip() and "anti-virus report" in texts(copy)
    assert st.sink.by_notice("recipient")


def test_6_1_2_cure_mode_needs_a_cured_key(make_stack) -> None:  # noqa: ANN001
    account = {"Recipients": r"acc@example\.com", "Check": True, "CuredRecipientNotify": True,
               "AdminAddress": ADMIN}
    plain = {"Recipients": r"plain@example\.com", "Check": True, "RecipientAction": "cured", "AdminAddress": ADMIN}
    st = make_stack({"account": account, "plain": plain, "default": {"Check": False}})
    st.send(eicar_mail("CURE"), rcpts=["acc@example.com", "plain@example.com", BOB])
    copies = {tuple(g.rcpts): g for g in st.sink.deliveries()}
    assert attachment(copies[("acc@example.com",)], "cure.com") == b"CURE"
    assert copies[("acc@example.com",)].msg["X-Anti-Virus"].endswith(" cured")
    assert attachment(copies[("plain@example.com",)], "cure.com") is None, "no Cured* key: infected, removed"
    assert copies[("plain@example.com",)].msg["X-Anti-Virus"].endswith(" infected")
    # Check=no: passed unscanned, and the header says so
    assert attachment(copies[(BOB,)], "cure.com") == b"CURE-" + EICAR
    assert copies[(BOB,)].msg["X-Anti-Virus"].endswith(" not_checked")
    notes = [(g.notice, g.rcpts) for g in st.sink.got if g.notice]
    assert ("recipient; cured", ["acc@example.com"]) in notes


def test_6_1_4_per_status_notifications(make_stack) -> None:  # noqa: ANN001
    g = {"AdminAddress": ADMIN, "InfectedRecipientNotify": True, "CuredRecipientNotify": True,
         "CorruptedRecipientNotify": True, "SenderNotify": True, "AdminNotify": True}
    st = make_stack({"default": g})
    seen = {}
    for kind in ("EICAR", "CURE", "CORR", "SUSP", "WARN"):
        st.sink.got.clear()
        st.send(eicar_mail(kind))
        seen[kind] = sorted(x.notice.split(";")[0] for x in st.sink.got if x.notice)
    assert seen["EICAR"] == ["admin", "recipient", "sender"]
    assert seen["CURE"] == ["admin", "recipient", "sender"]
    assert seen["CORR"] == ["admin", "recipient", "sender"]
    assert seen["SUSP"] == ["admin", "sender"], "recipients only for infected, cured, corrupted"
    assert seen["WARN"] == ["admin", "sender"]


def test_templates_macros_locale_and_header_injection(make_stack, tmp_path) -> None:  # noqa: ANN001
    tpl = tmp_path / "tpl"
    tpl.write_text("V=%VERSION%|S=%SENDER%|R=%RECIPIENT%|M=%MSGID%|N=%VIRUSNAME%|J=%SUBJECT%|"
                   "D=%DATETIME%|A=%ACTION%|H=%HEADERS%")
    st = make_stack({"default": {"AdminAddress": ADMIN, "SenderNotify": True}},
                    extra={"smtpscan.notify": {"Template": tpl, "Subject": "Virus %VIRUSNAME% in %SUBJECT%"},
                           "locale": {"Infected": "ZARAZHEN", "DateFormat": "%Y/%m/%d"}})
    evil = "=?utf-8?q?hi=0D=0ABcc:_victim@evil.example?="
    data = eicar_mail("EICAR", subject="x").replace(b"Subject: x", b"Subject: " + evil.encode())
    st.send(data, sender="")  # the null sender: never notified
    assert not st.sink.by_notice("sender")
    (note,) = st.sink.by_notice("recipient")
    body = texts(note)
    assert "V=kav4mailservers version 5.5/RELEASE" in body
    assert "R=bob@example.com" in body and "N=eicar.com: ZARAZHEN (EICAR-Test-File)" in body
    assert "A=attachment removed" in body and "M=<x." in body and "H=From: alice@example.com" in body
    import re
    assert re.search(r"D=\d{4}/\d\d/\d\d ", body)
    assert note.msg["Subject"].startswith("Virus EICAR-Test-File in ")
    assert note.msg.get_all("Bcc") is None and b"\nBcc:" not in note.data
    st.sink.got.clear()
    st.send(eicar_mail("EICAR"), sender=SENDER)
    (snd,) = st.sink.by_notice("sender")
    assert "A=|" in texts(snd), "no %ACTION% for senders"
