"""Uninstall reverses kav4mailservers.conf with the runtime's own reader (issue 10 item 1).

The reproduced bug: a before-image holding the guide's continued ``ForwardMailer=smtp:
(/usr/sbin/sendmail -bs \\`` line, then an admin edit after install (so the file is reversed key
by key, not restored byte for byte).  A second reader that did not know backslash continuations
put back only the first physical line, and the runtime then refused the file it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from kavsetup.integrate.edits import IniValues, Plan
from kavsetup.integrate.files import Root
from kavsetup.integrate.transaction import Transaction
from runtime.config import load_config

# Guide 4.4.5 prints ForwardMailer for Sendmail continued on a second line.
GUIDE_FILE = ("[smtpscan.general]\n"
              "Protocol=smtp\n"
              "ForwardMailer=smtp: (/usr/sbin/sendmail -bs \\\n"
              "    -C /etc/mail/sendmail.cf)\n"
              "ListenAddress=stdio\n")
OURS = (("smtpscan.general", "Protocol", "lmtp"),
        ("smtpscan.general", "ForwardMailer", "smtp:127.0.0.1:10026"),
        ("smtpscan.group:kavadministrators", "Recipients", "postmaster@.*"))


def test_continued_line_survives_uninstall_after_an_admin_edit(tmp_path: Path) -> None:
    conf = tmp_path / "etc/kav.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(GUIDE_FILE)
    before = load_config(conf)
    assert Transaction(Root(tmp_path)).apply(Plan("none", (IniValues("/etc/kav.conf", OURS),))).ok
    assert "ForwardMailer=smtp:127.0.0.1:10026\n" in conf.read_text()
    conf.write_text(conf.read_text() + "# checked by the admin\n")  # changed since install
    out = Transaction(Root(tmp_path)).uninstall()
    assert out.ok, out.message
    assert conf.read_text() == GUIDE_FILE + "# checked by the admin\n"
    after = load_config(conf)  # the runtime loads what uninstall wrote
    for key in ("Protocol", "ForwardMailer", "ListenAddress"):
        assert after.get("smtpscan.general", key) == before.get("smtpscan.general", key)


# Files the reversal must give back exactly (plus the admin's edit): each reversed key by key.
SHAPES = {
    "continued": GUIDE_FILE,
    "semicolon-comments": ("; written by hand\n[smtpscan.general]\n;Protocol=smtp\nProtocol=smtp\n"
                           "; ForwardMailer=smtp:old:25\nForwardMailer=smtp:mx:25 \n"),
    "crlf": "[smtpscanner.general]\r\nProtocol = smtp\r\nForwardMailer=\"smtp:mx:25\"\r\n\r\n[path]\r\n",
    "no-final-newline": "[smtpscan.general]\nForwardMailer=smtp: (/usr/sbin/sendmail -bs \\\n-C x.cf)",
    "empty-file": "",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_reversal_keeps_the_file_shape(tmp_path: Path, shape: str) -> None:
    text = SHAPES[shape]
    eol = "\r\n" if "\r\n" in text else "\n"
    conf = tmp_path / "etc/kav.conf"
    conf.parent.mkdir(parents=True)
    conf.write_bytes(text.encode())
    assert Transaction(Root(tmp_path)).apply(Plan("none", (IniValues("/etc/kav.conf", OURS),))).ok
    installed = conf.read_bytes().decode()
    assert "Recipients=postmaster@.*" in installed and installed.count("[smtpscan.group:kavadministrators]") == 1
    conf.write_bytes((f"# admin{eol}" + installed).encode())
    out = Transaction(Root(tmp_path)).uninstall()
    assert out.ok, out.message
    assert conf.read_bytes().decode() == f"# admin{eol}" + text
    load_config(conf)
