"""Qmail integration (guide 4.4.2): smtpscanner takes the place of qmail-queue.

``/var/qmail/bin/qmail-queue`` is renamed to ``queue.kav55`` (set-uid qmailq, group qmail,
04711 as the guide lists) and our wrapper is put in its place; everything that queues mail
(qmail-smtpd, qmail-inject, sendmail wrapper) then goes through the scanner, which calls
``queue.kav55``.  ``ForwardMailer`` is ``qmail:(/var/qmail/bin/queue.kav55)`` — the guide prints
``qmail-queue`` there, which after the swap is the wrapper itself and would loop.

No set-uid script (issue 11 item 4): the guide's wrapper is installed 04711, which Linux ignores
on scripts, so it ran as qmaild or whichever user submitted and could not read the filter's files.
Our wrapper is a plain 0755 script that execs ``kavqmailqueue``, an unprivileged client: it hands
message and envelope to the standing smtpscanner over ``unix:/run/kav4mailservers/qmail-queue.sock``
(SMTP, so ``Protocol=smtp``) and maps the answer to qmail-queue(8)'s exit codes.  smtpscanner runs
as the filter's account like on every other MTA, and the only set-uid program left is qmail's own
``queue.kav55``, which it runs as kluser.
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath
from typing import Any

from kavsetup.detect.model import MTAInfo, System
from kavsetup.detect.qmail import ORIGINAL_NAME, qmail_info
from kavsetup.detect.rootfs import RootFS
from kavsetup.integrate.edits import Edit, EnsureDir, SwapIn
from kavsetup.integrate.files import Root
from kavsetup.integrate.settings import IntegrationSettings
from kavsetup.mta import CompileError, common
from kavsetup.mta.templates import render

#: smtpscanner's socket for the qmail-queue client (the unit's RuntimeDirectory, world-connectable
#: like qmail-queue itself: anyone who may queue mail may hand it to the filter).
SOCKET = "/run/kav4mailservers/qmail-queue.sock"

#: What the setup dialogue (kavsetup/conversation.py) asks for this MTA (see postfix.SETUP):
#: qmail's "configuration" is its home directory.
SETUP = {"config": "/var/qmail", "config_is": "", "config_not": "", "choices": (), "ports": ()}

def plan(system: System, mta: MTAInfo, s: IntegrationSettings) -> tuple[list[Edit], list[str]]:
    info = mta.qmail
    aside = info.home / "bin" / ORIGINAL_NAME
    if info.already_wrapped:
        raise CompileError(f"qmail: {info.qmail_queue} is already wrapped ({aside} exists or it is not "
                           "qmail's own program); refusing to wrap it twice")
    if not info.qmail_queue_exists:
        raise CompileError(f"qmail: {info.qmail_queue} not found; give qmail's home with --mta-config")
    qmailq = system.users.user("qmailq")
    group = system.users.group("qmail")
    uid = qmailq.uid if qmailq else -1
    gid = group.gid if group else -1
    notes = [] if qmailq and group else ["qmail: user qmailq or group qmail not found; keeping the "
                                         "current owner of qmail-queue"]
    if s.protocol != "smtp":
        notes.append("qmail: kavqmailqueue speaks SMTP to smtpscanner's socket, so Protocol=smtp")
        s = s.with_(protocol="smtp")
    wrapper = render("qmail-queue.sh", prefix=s.prefix, aside=str(aside), socket=SOCKET)
    edits: list[Edit] = []
    # The wrapper runs as whoever queues mail (qmaild for qmail-smtpd, any local user through
    # qmail-inject) and reads nothing of ours: it talks to the standing smtpscanner, which runs as
    # the filter's account like on every other MTA (issue 11), so the configuration stays 0640.
    acct, _uid, filter_gid = common.accounts(system, s, s.spool)
    edits += acct
    edits += common.parent_dirs(s.spool)
    edits.append(EnsureDir(s.spool, 0o750, _uid, filter_gid))
    edits += common.conf_edits(s, f"qmail:({aside})", f"unix:{SOCKET}", filter_gid)
    edits.append(SwapIn(str(info.qmail_queue), str(aside), wrapper, 0o755, 0o4711, uid, gid))
    notes.append(f"qmail: smtpscanner runs as a daemon on unix:{SOCKET} (the package starts it: "
                 "kav4mailservers-smtpscanner); qmail-queue is its client")
    return edits, notes


def from_config(root: Root, config: str, detected: MTAInfo | None) -> MTAInfo:
    """``--mta-config`` names qmail's home (``/var/qmail``) or a file two levels below it."""
    p = PurePosixPath(config)
    home = p if root.read(p).kind == "dir" else p.parent.parent
    info = qmail_info(RootFS(root.path), home)
    if detected is not None:
        return dataclasses.replace(detected, details=info)
    return MTAInfo.configured(info, p)


def site_facts(root: Root, mta: MTAInfo) -> dict[str, Any]:
    """Guide 6.1.1: the administrators behind ``postmaster`` are in qmail's .qmail-postmaster."""
    return {"postmasters": mta.qmail.postmaster_targets}


def verify(root: Root, mta: MTAInfo, s: IntegrationSettings) -> tuple[bool, str]:
    """qmail has no configuration checker: check that the original is set aside, set-uid."""
    img = root.read(mta.qmail.home / "bin" / ORIGINAL_NAME)
    if img.kind != "file" or not img.mode & 0o4000:
        return False, f"{ORIGINAL_NAME} is not the set-uid original qmail-queue"
    return True, f"verification: {ORIGINAL_NAME} holds the original qmail-queue (set-uid); no qmail checker exists"


def after_change(root: Root, phase: str) -> list[str]:
    """Nothing to reload: qmail-smtpd runs qmail-queue afresh for every message, so the swapped
    program is in force at once, and mail is never queued for a transport of ours."""
    return []
