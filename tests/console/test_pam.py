"""Login with a system account through a real PAM stack (libpam, pam_exec, pam_permit) while the
console runs unprivileged, as it does in production (issue 18, security: "optionally PAM")."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.support.console import Client

PASSWORD = "pam secret 123"

CHECK = """#!/usr/bin/python3
# pam_exec expose_authtok: the password on stdin (NUL-terminated), the user in PAM_USER
import os, sys
pw = sys.stdin.buffer.read().split(b"\\0")[0]
with open({calls!r}, "a") as fh:
    fh.write(os.environ.get("PAM_USER", "") + "\\n")
sys.exit(0 if pw == {password!r} else 1)
"""


@pytest.fixture
def pam_service(tmp_path: Path):  # noqa: ANN201
    """A throw-away /etc/pam.d service whose auth step is a script; removed afterwards."""
    pytest.importorskip("pam", reason="python-pam (Debian: python3-pampy) is not installed")
    if not Path("/etc/pam.d").is_dir() or not os.access("/etc/pam.d", os.W_OK):
        pytest.skip("needs a writable /etc/pam.d (root) for a test PAM service")
    for mod in ("pam_exec.so", "pam_permit.so"):
        if not any(Path(d, mod).exists() for d in ("/usr/lib/x86_64-linux-gnu/security", "/lib/security",
                                                   "/usr/lib/security", "/lib/x86_64-linux-gnu/security",
                                                   "/usr/lib/aarch64-linux-gnu/security")):
            pytest.skip(f"{mod} not installed (libpam-modules)")
    name = f"kavconsole-test-{secrets.token_hex(4)}"
    path = Path("/etc/pam.d") / name

    def write(check: Path) -> str:
        path.write_text(f"auth required pam_exec.so expose_authtok quiet {check}\n"
                        "account required pam_permit.so\n")
        return name

    yield write
    path.unlink(missing_ok=True)


def test_system_accounts_log_in_through_pam_by_group_only(make_console, pam_service) -> None:  # noqa: ANN001
    st = make_console(start_console=False)
    calls = st.root / "pam-calls"
    check = st.root / "pam-check.py"
    check.write_text(CHECK.format(calls=str(calls), password=PASSWORD.encode()))
    check.chmod(0o755)
    service = pam_service(check)
    # daemon (primary group daemon) is an administrator, bin a viewer, sys neither
    st.write_all({"PAMService": service, "PAMAdminGroup": "daemon", "PAMReadOnlyGroup": "bin"})
    st.start_console()

    admin = Client(st.url)
    assert admin.login("daemon", PASSWORD) == 303
    assert admin.get("/audit")[0] == 200

    viewer = Client(st.url)
    assert viewer.login("bin", PASSWORD) == 303
    assert viewer.get("/status")[0] == 200
    assert viewer.get("/audit")[0] == 403

    assert Client(st.url).login("daemon", "wrong password") == 401
    assert Client(st.url).login("sys", PASSWORD) == 401  # right password, no console group
    assert Client(st.url).login("admin", "correct horse battery") == 303  # the password file still works

    assert calls.read_text().split() == ["daemon", "bin", "daemon"]  # sys never reached PAM
    logins = [a for a in st.audit_lines() if a["action"] == "login"]
    assert [(a["user"], a["result"][:8], a.get("role")) for a in logins] == [
        ("daemon", "ok", "admin"), ("bin", "ok", "readonly"), ("daemon", "refused:", None),
        ("sys", "refused:", None), ("admin", "ok", "admin")]
    assert "PAM:" in logins[2]["result"] and "not in a PAM console group" in logins[3]["result"]
    assert logins[0]["method"] == f"PAM service {service}" and logins[4]["method"] == "password file"
