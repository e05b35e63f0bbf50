"""Postfix facts come from the real ``postconf`` run *inside* the root when it can run there.

The root here is made runnable by copying this machine's ``postconf`` and the libraries ``ldd``
lists into it; its main.cf says things no default says, so only a postconf that really read the
root's main.cf can report them.  The same tree with binaries forbidden falls back to files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kavsetup.detect import detect

POSTCONF = shutil.which("postconf") or ""


def _runnable_root(root: Path) -> Path:
    ldd = subprocess.run(["ldd", POSTCONF], capture_output=True, text=True, check=True).stdout
    for path in [POSTCONF, *re.findall(r"(/\S+)", ldd)]:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), target)
    (root / "etc/postfix").mkdir(parents=True)
    (root / "etc/postfix/main.cf").write_text(
        "compatibility_level = 3.6\n"
        "daemon_directory = /opt/pfx/libexec\n"
        "mail_owner = pfxowner\n"
        "content_filter = lmtp:[127.0.0.1]:10099\n")
    (root / "etc/postfix/master.cf").write_text("smtp inet n - y - - smtpd\n")
    (root / "etc/os-release").write_text("ID=debian\nVERSION_ID=\"12\"\n")
    return root


@pytest.mark.root
@pytest.mark.skipif(not POSTCONF, reason="postconf not installed on this machine")
def test_postconf_runs_in_chroot(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    root = _runnable_root(tmp_path / "root")
    host_version = subprocess.run([POSTCONF, "-dh", "mail_version"], capture_output=True, text=True,
                                  check=True).stdout.strip()
    system = detect(root)
    postfix = system.mta("postfix")
    assert postfix is not None
    info = postfix.postfix
    assert info.postconf_ran is True and postfix.version_source == "postconf"
    assert str(postfix.version) == host_version
    assert str(info.daemon_directory) == "/opt/pfx/libexec"
    assert info.mail_owner == "pfxowner"
    assert info.content_filter == "lmtp:[127.0.0.1]:10099"

    files_only = detect(root, run_binaries=False).mta("postfix")
    assert files_only is not None and files_only.postfix.postconf_ran is False
    assert files_only.postfix.content_filter == "lmtp:[127.0.0.1]:10099"   # parsed from main.cf
    assert files_only.version_source != "postconf"
