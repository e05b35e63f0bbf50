"""Unreadable files give one clear line, never a traceback.

Root reads any file whatever its mode, so a ``chmod 000`` file is *not* unreadable for the usual
(root) caller.  Two honest ways to get a real failure: (1) run detection as an unprivileged user
(``nobody``, in a forked child that drops privileges) on a tree whose ``main.cf`` is mode 000 —
a real EACCES from the kernel; (2) put a directory where the file should be (EISDIR, fails for
root too; used by the debian-12-exim-unreadable fixture).  Loops and dangling links are also
covered here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import kavsetup.detect.system  # noqa: F401  (import everything before dropping privileges)
from kavsetup.commands import detect as detect_command
from kavsetup.detect import detect

NOBODY = 65534


def _tree(base: Path) -> Path:
    (base / "etc/postfix").mkdir(parents=True)
    (base / "usr/sbin").mkdir(parents=True)
    (base / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    (base / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "postfix:x:101:104::/var/spool/postfix:/bin/false\n")
    (base / "etc/group").write_text("root:x:0:\npostfix:x:104:\n")
    (base / "usr/sbin/postconf").write_bytes(b"stand-in\0mail_version=3.7.11\0")
    (base / "etc/postfix/main.cf").write_text("myhostname = mx.example.org\n")
    (base / "etc/postfix/master.cf").write_text("smtp inet n - y - - smtpd\n")
    for d in [base, *[p for p in base.rglob("*") if p.is_dir()]]:
        d.chmod(0o755)
    (base / "etc/postfix/main.cf").chmod(0o000)
    return base


def _main(argv: list[str]) -> int:
    """``kavsetup detect ...`` through the command's own parser only: the other sub-commands'
    imports (jinja2 under /root) are out of reach once we are nobody."""
    parser = argparse.ArgumentParser(prog="kavsetup")
    detect_command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def _run_as_nobody(argv: list[str]) -> tuple[int, str, str]:
    """Fork; the child drops to nobody and runs ``kavsetup detect`` in-process (no exec: the
    interpreter under /root is not reachable for nobody)."""
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.close(out_r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = _main(argv)
            os.write(out_w, json.dumps({"out": out.getvalue(), "err": err.getvalue()}).encode())
        except BaseException as exc:  # report, never let the child run the parent's pytest
            os.write(out_w, json.dumps({"out": "", "err": f"child failed: {exc!r}"}).encode())
        finally:
            os._exit(code)
    os.close(out_w)
    data = b""
    while chunk := os.read(out_r, 65536):
        data += chunk
    os.close(out_r)
    _, status = os.waitpid(pid, 0)
    doc = json.loads(data)
    return os.waitstatus_to_exitcode(status), doc["out"], doc["err"]


@pytest.mark.root
def test_eacces_as_unprivileged_user_is_one_line() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to nobody")
    base = Path(tempfile.mkdtemp(prefix="kav-detect-eacces-", dir="/tmp"))
    try:
        root = _tree(base)
        code, out, err = _run_as_nobody(["detect", "--root", str(root)])
        assert code == 0, err
        assert "Traceback" not in out + err
        assert "  /etc/postfix/main.cf: cannot read: permission denied" in out.splitlines()
        code, out, err = _run_as_nobody(["detect", "--json", "--root", str(root)])
        doc = json.loads(out)
        assert {"path": "/etc/postfix/main.cf", "message": "cannot read: permission denied"} in doc["problems"]
        assert doc["active"] == "postfix"
    finally:
        shutil.rmtree(base)


@pytest.mark.root
def test_unsearchable_directory_as_unprivileged_user() -> None:
    """A 0700 /etc/postfix owned by root: every lookup under it fails with EACCES for nobody."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to nobody")
    base = Path(tempfile.mkdtemp(prefix="kav-detect-eacces-", dir="/tmp"))
    try:
        root = _tree(base)
        (root / "etc/postfix/main.cf").chmod(0o644)
        (root / "etc/postfix").chmod(0o700)
        code, out, err = _run_as_nobody(["detect", "--json", "--root", str(root)])
        assert code == 0, err
        doc = json.loads(out)
        assert "Traceback" not in err
        assert {"path": "/etc/postfix/main.cf", "message": "cannot read: permission denied"} in doc["problems"]
        assert doc["active"] == "postfix"
    finally:
        shutil.rmtree(base)


def test_symlink_loop_and_escape(tmp_path: Path) -> None:
    (tmp_path / "etc/mail").mkdir(parents=True)
    (tmp_path / "usr/sbin").mkdir(parents=True)
    os.symlink("/etc/mail/b.cf", tmp_path / "etc/mail/a.cf")
    os.symlink("/etc/mail/a.cf", tmp_path / "etc/mail/b.cf")
    os.symlink("a.cf", tmp_path / "etc/mail/sendmail.cf")
    # An absolute link must be followed inside the root: /etc/passwd here is the root's, which
    # does not exist, even though the host has one.
    os.symlink("/etc/passwd", tmp_path / "etc/mail/passwd-link")
    (tmp_path / "usr/sbin/sendmail.sendmail").write_bytes(b"\0Sendmail\0")
    os.symlink("sendmail.sendmail", tmp_path / "usr/sbin/sendmail")
    system = detect(tmp_path)
    problems = [str(p) for p in system.problems]
    assert "/etc/mail/sendmail.cf: too many levels of symbolic links" in problems
    from kavsetup.detect.rootfs import RootFS
    fs = RootFS(tmp_path)
    assert fs.read_text("/etc/mail/passwd-link") is None
    assert [str(p) for p in fs.problems] == [
        "/etc/mail/passwd-link: broken symbolic link (points to /etc/passwd, which does not exist)"]
