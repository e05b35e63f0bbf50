"""Accounts setup relies on (guide 4.4.3 creates ``kluser`` in group ``filter``; 4.4.2 gives
qmail-queue to ``qmailq``), read from the tree's ``etc/passwd`` and ``etc/group`` — never from
the host's NSS, which would describe the wrong system under ``--root``."""

from __future__ import annotations

from kavsetup.detect.model import GroupEntry, MTAKind, UserEntry, Users
from kavsetup.detect.rootfs import RootFS

RELEVANT_USERS = ("kluser", "postfix", "Debian-exim", "exim", "mailnull", "smmsp", "mail",
                  "qmaild", "qmaill", "qmailp", "qmailq", "qmailr", "qmails", "alias")
RELEVANT_GROUPS = ("filter", "kavadministrators", "postfix", "postdrop", "Debian-exim", "exim",
                   "mailnull", "smmsp", "mail", "qmail", "nofiles")
#: The run-as user of each MTA, by preference.
MTA_USERS: dict[MTAKind, tuple[str, ...]] = {
    MTAKind.POSTFIX: ("postfix",),
    MTAKind.EXIM: ("Debian-exim", "exim", "mailnull"),
    MTAKind.SENDMAIL: ("smmsp", "mailnull"),
    MTAKind.QMAIL: ("qmailq",),
}


def _rows(fs: RootFS, path: str) -> list[list[str]]:
    rows = []
    for lineno, line in enumerate((fs.read_text(path) or "").splitlines(), 1):
        if not line.strip() or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) < 4 or not parts[2].lstrip("-").isdigit():
            fs.problem(f"{path}:{lineno}", "malformed line ignored")
            continue
        rows.append(parts)
    return rows


def read_users(fs: RootFS, active: MTAKind | None, mta_user_hint: str = "") -> Users:
    users, groups, uids, gids = [], [], set(), set()
    for parts in _rows(fs, "/etc/passwd"):
        uid, gid = int(parts[2]), int(parts[3]) if parts[3].lstrip("-").isdigit() else -1
        uids.add(uid)
        if parts[0] in RELEVANT_USERS:
            users.append(UserEntry(parts[0], uid, gid, parts[5] if len(parts) > 5 else "",
                                   parts[6] if len(parts) > 6 else ""))
    for parts in _rows(fs, "/etc/group"):
        gid = int(parts[2])
        gids.add(gid)
        if parts[0] in RELEVANT_GROUPS:
            groups.append(GroupEntry(parts[0], gid, tuple(m for m in parts[3].split(",") if m)))
    by_name = {u.name: u for u in users}
    mta_user = None
    if active is not None:
        names = ((mta_user_hint,) if mta_user_hint else ()) + MTA_USERS[active]
        mta_user = next((by_name[n] for n in names if n in by_name), None)
    return Users(tuple(users), tuple(groups), mta_user, frozenset(uids), frozenset(gids))


def find_user(fs: RootFS, name: str) -> UserEntry | None:
    """Any account of the tree by name (``kavsetup pop3`` works for ordinary local users too)."""
    for parts in _rows(fs, "/etc/passwd"):
        if parts[0] == name and parts[3].lstrip("-").isdigit():
            return UserEntry(parts[0], int(parts[2]), int(parts[3]), parts[5] if len(parts) > 5 else "",
                             parts[6] if len(parts) > 6 else "")
    return None
