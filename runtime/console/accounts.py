"""Console accounts: ``user:role:scrypt$logN$r$p$salt$hash`` lines in [console] PasswordFile.

scrypt (hashlib, memory-hard, in every Python >= 3.6 built with OpenSSL) so a stolen file costs an
attacker ~32 MiB and tens of milliseconds per guess; the comparison is constant-time.  The file is
replaced atomically with mode 0600: it is the console's only secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from runtime.fsutil import atomic_write

ROLES = ("admin", "readonly")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")
LOG_N, R, P = 15, 8, 1


class AccountError(Exception):
    pass


@dataclass(frozen=True)
class Account:
    user: str
    role: str
    hash: str


def hash_password(password: str, salt: bytes | None = None, log_n: int = LOG_N) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=1 << log_n, r=R, p=P, maxmem=64 << 20, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${log_n}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, log_n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt" or not 10 <= int(log_n) <= 20:
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=1 << int(log_n), r=int(r),
                             p=int(p), maxmem=128 << 20, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def load(path: str | os.PathLike[str]) -> dict[str, Account]:
    """The accounts; a malformed line is an error naming file and line (never silently skipped)."""
    out: dict[str, Account] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not _USER.match(parts[0]) or parts[1] not in ROLES:
            raise AccountError(f"{path}:{n}: expected user:role:hash with role admin or readonly")
        out[parts[0]] = Account(*parts)
    return out


def set_password(path: str | os.PathLike[str], user: str, password: str, role: str,
                 owner: tuple[int, int] | None = None) -> None:
    """Add or change an account.  ``owner`` applies to a new file (root making the first account
    for a console that runs as [console] User); an existing file keeps its owner."""
    if not _USER.match(user):
        raise AccountError(f"{user!r}: user names are letters, digits and _ . @ - (at most 64)")
    if role not in ROLES:
        raise AccountError(f"{role!r}: role must be admin or readonly")
    if len(password) < 8:
        raise AccountError("password too short (at least 8 characters)")
    accounts = load(path)
    accounts[user] = Account(user, role, hash_password(password))
    body = "".join(f"{a.user}:{a.role}:{a.hash}\n" for a in accounts.values())
    p = Path(path)
    atomic_write(p, body.encode(), mode=0o600, owner=None if p.exists() else owner)
