"""Edits every integration shares: the kluser account and filter group, our directories, and
the kav4mailservers.conf keys that must agree with what was set in the MTA (guide 4.4.5, 6.1.1).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from kavsetup.detect.model import System
from kavsetup.integrate.edits import AccountLine, EnsureDir, IniValues
from kavsetup.integrate.edits import Edit as Edit
from kavsetup.integrate.settings import IntegrationSettings
from kavsetup.mta import CompileError


def free_id(used: frozenset[int] | set[int], lo: int = 100, hi: int = 999) -> int:
    """First free system id, as adduser --system picks them."""
    for i in range(lo, hi + 1):
        if i not in used:
            return i
    raise CompileError(f"no free system id between {lo} and {hi}")


def choose_ports(s: IntegrationSettings) -> tuple[int, int]:
    """Filter and reinjection ports, moved up together past any taken port."""
    taken = set(s.taken_ports)
    f = s.filter_port
    while f in taken:
        f += 1
    r = s.reinject_port if s.reinject_port != f else f + 1
    while r in taken or r == f:
        r += 1
    return f, r


def parent_dirs(path: str) -> list[Edit]:
    """EnsureDir(only_create) for each ancestor, so files can be written into a bare root and
    the directories we had to make are removed again on uninstall."""
    p = PurePosixPath(path)
    return [EnsureDir(str(d), 0o755, 0, 0, only_create=True)
            for d in reversed(p.parents) if str(d) != "/"]


def accounts(system: System, s: IntegrationSettings, home: str) -> tuple[list[Edit], int, int]:
    """The ``kluser`` user in the ``filter`` group (guide 4.4.3 steps 4-5), only if missing."""
    edits: list[Edit] = []
    users = system.users
    group = users.group(s.group)
    user = users.user(s.user)
    gid = group.gid if group else free_id(users.gids)
    if group is None:
        edits.append(AccountLine("/etc/group", s.group, f"{s.group}:x:{gid}:"))
        edits.append(AccountLine("/etc/gshadow", s.group, f"{s.group}:!::"))
    if user is None:
        uid = free_id(users.uids)
        gecos = "Kaspersky Anti-Virus for Mail Servers"
        edits.append(AccountLine("/etc/passwd", s.user, f"{s.user}:x:{uid}:{gid}:{gecos}:{home}:{s.nologin}"))
        edits.append(AccountLine("/etc/shadow", s.user, ":".join([s.user, "!*", "", "", "", "", "", "", ""])))
    else:
        uid = user.uid
    return edits, uid, gid


def ere_escape(text: str) -> str:
    """POSIX ERE literal (guide 6.1.1 masks are POSIX regex)."""
    return re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", text)


def admin_masks(addresses: tuple[str, ...]) -> str:
    """Recipients of ``[smtpscan.group:kavadministrators]``: postmaster and every address it
    is an alias of (guide 6.1.1).  A bare local name matches that user at any domain."""
    masks: list[str] = ["postmaster@.*"]
    for a in addresses:
        a = a.strip()
        if not a:
            continue
        m = ere_escape(a) if "@" in a else f"{ere_escape(a)}@.*"
        if m not in masks:
            masks.append(m)
    return ",".join(masks)


def conf_edits(s: IntegrationSettings, forward: str, listen: str, gid: int, mode: int = 0o640) -> list[Edit]:
    """kav4mailservers.conf keys that must match the MTA side (guide 4.4.5).  Created 0640
    root:<filter group> so only the filter reads it, unless the caller says otherwise."""
    values: list[tuple[str, str, str]] = [
        ("smtpscan.general", "Protocol", s.protocol),
        ("smtpscan.general", "ForwardMailer", forward),
    ]
    if listen:
        values.append(("smtpscan.general", "ListenAddress", listen))
    if s.notify_from:
        values.append(("smtpscan.general", "NotifyFromAddress", s.notify_from))
    if s.xforward:
        values.append(("smtpscan.general", "EHLOsupportXFORWARD", "yes"))
        values.append(("smtpscan.general", "EHLOattrsXFORWARD", "NAME ADDR PROTO HELO"))
    if s.admin_address:
        values.append(("smtpscan.group:default", "AdminAddress", s.admin_address))
        values.append(("smtpscan.group:default", "AdminNotify", "yes"))
    values.append(("smtpscan.group:kavadministrators", "Recipients", admin_masks(s.postmasters)))
    values.extend(setup_values(s))
    default = s.conf_default_text or (
        "# kav4mailservers.conf: written by kavsetup install (guide 4.4.5).\n"
        "# Keys not listed here take their built-in defaults.\n")
    return [*parent_dirs(s.conf_file), IniValues(s.conf_file, tuple(values), default, mode, 0, gid)]


def setup_values(s: IntegrationSettings) -> list[tuple[str, str, str]]:
    """The setup dialogue's answers that live in kav4mailservers.conf (guide 3.3, 5.1.1, 5.1.5,
    5.4.1); an empty answer leaves the key at its default."""
    values: list[tuple[str, str, str]] = []
    if s.domains:
        values.append(("smtpscan.license", "LicenseDomains", s.domains))
    if s.update_source:
        values.append(("updater.options", "UpdateServerUrl", s.update_source))
        values.append(("updater.options", "UseUpdateServerUrl", "yes"))
    if s.proxy:
        values.append(("updater.options", "ProxyAddress", s.proxy))
        values.append(("updater.options", "UseProxy", "yes"))
    return values


def read_postmasters(lines: list[str]) -> tuple[str, ...]:
    """Targets of ``postmaster:`` in an /etc/aliases text (continuations and commas handled)."""
    joined: list[str] = []
    for line in lines:
        if line.startswith((" ", "\t")) and joined:
            joined[-1] += " " + line.strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            joined.append(line.strip())
    for entry in joined:
        name, sep, rest = entry.partition(":")
        if sep and name.strip().lower() == "postmaster":
            return tuple(t.strip().strip('"') for t in rest.split(",") if t.strip()
                         and not t.strip().startswith(("|", "/", ":include:")))
    return ()
