"""Console login with a system account through PAM (issue 18: "optionally PAM where available").

Off unless [console] PAMService names a PAM service (a file in /etc/pam.d).  Only accounts in
[console] PAMAdminGroup (admin role) or PAMReadOnlyGroup (read-only role) may log in this way: a
system account is not a console account by default, since the quarantine holds other people's mail.
The group is checked before PAM is asked, so an account outside both groups costs no PAM call.

The binding is python-pam (Debian: python3-pampy), loaded only when PAM is configured.  The console
never runs as root, which limits what PAM can check: pam_unix verifies another user's password only
as root (its helper unix_chkpwd checks the caller's own password only), so a PAM service for the
console uses a module that works unprivileged (pam_sss, pam_ldap, pam_krb5, pam_userdb, ...).
docs/console.md shows such a service file.
"""

from __future__ import annotations

import grp
import pwd


class PamUnavailable(Exception):
    """PAM is configured but cannot be used (the binding is not installed)."""


def role_of(user: str, admin_group: str, readonly_group: str) -> str | None:
    """``admin``, ``readonly`` or None from the account's groups (primary and supplementary)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    for group, role in ((admin_group, "admin"), (readonly_group, "readonly")):
        if not group:
            continue
        try:
            gr = grp.getgrnam(group)
        except KeyError:
            continue
        if pw.pw_gid == gr.gr_gid or user in gr.gr_mem:
            return role
    return None


def authenticate(service: str, user: str, password: str) -> tuple[bool, str]:
    """(accepted, PAM's reason): pam_authenticate then pam_acct_mgmt (an expired or locked
    account is refused); no credentials are established, the console keeps its own session."""
    try:
        import pam
    except ImportError as exc:
        raise PamUnavailable(f"[console] PAMService is set but python-pam (python3-pampy) is not installed: {exc}"
                             ) from None
    p = pam.pam()
    try:
        ok = p.authenticate(user, password, service=service, resetcreds=False)
    except ValueError as exc:  # a NUL byte in a field: never a valid login
        return False, str(exc)
    return bool(ok), str(p.reason)
