"""Telling the service manager that a daemon is ready, or why it could not start (sd_notify(3)).

A daemon started in the background looks alive to whoever started it as soon as it was forked:
an init script that only forks (``start-stop-daemon --background``) says "ok" for a daemon that
dies a moment later on a port still held by its killed predecessor's last workers, and mail
then waits in the MTA's queue for a filter nobody restarts.  With the readiness protocol the
starter waits until the daemon listens: the packages' init scripts start aveserver,
smtpscanner and kavconsole with ``start-stop-daemon --notify-await`` (dpkg >= 1.19.3), which implements this
protocol, and fail with the daemon's reason when it sends ``ERRNO=`` instead.

The protocol is one datagram of ``KEY=value`` lines to the UNIX socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` is Linux's abstract namespace).  Without the variable the
calls do nothing: a daemon run by hand or by a ``Type=simple`` unit.  The variable is removed
once the daemon has said ready or failed, so the workers, exec actions and helpers it starts
later never speak for it.
"""

from __future__ import annotations

import errno as errnos
import os
import socket

ENV = "NOTIFY_SOCKET"

_channel: socket.socket | None = None


def connect() -> None:
    """Connect to the starter's socket now, for a daemon about to give up root: the socket of
    ``start-stop-daemon`` started without ``--chuid`` is root's (mode 0660), and a datagram
    socket's right to send is checked when it connects, not at each send."""
    global _channel
    address = _address()
    if _channel is not None or address is None:
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.settimeout(5)
        sock.connect(address)
    except OSError:
        sock.close()
        return
    _channel = sock


def _address() -> str | None:
    where = os.environ.get(ENV, "")
    if not where.startswith(("/", "@")):
        return None
    return "\0" + where[1:] if where.startswith("@") else where


def notify(*fields: str) -> bool:
    """Send ``fields`` as one notification; False when there is no one to tell or it failed
    (never raised: the daemon's service does not depend on its starter listening)."""
    message = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
    if _channel is not None:
        try:
            _channel.send(message)
        except OSError:
            return False
        return True
    address = _address()
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(message, address)
    except OSError:
        return False
    return True


def _done() -> None:
    """The daemon has spoken: nothing it starts later speaks for it."""
    global _channel
    os.environ.pop(ENV, None)
    if _channel is not None:
        _channel.close()
        _channel = None


def ready(status: str = "") -> bool:
    """The daemon serves: its socket listens and its pid file is written."""
    told = notify("READY=1", f"MAINPID={os.getpid()}", *([f"STATUS={status}"] if status else []))
    _done()
    return told


def _errno(exc: BaseException) -> int | None:
    """The first positive errno along the explicit ``raise ... from`` chain (bounded: a chain is
    short, but a cycle must not hang a daemon that is already failing)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        code = getattr(cur, "errno", None)
        if isinstance(code, int) and code > 0:
            return code
        cur = cur.__cause__
    return None


def failed(exc: BaseException | str) -> bool:
    """The daemon gives up before it was ready: ``ERRNO=`` makes ``start-stop-daemon
    --notify-await`` (and systemd) report the start as failed at once, with the reason's
    strerror, instead of after the whole notify timeout.  The errno is the exception's own, else
    that of the error it was raised from (a StartupError ``from`` a refused bind names the bind's
    reason, not "Invalid argument"); with none at all (a configuration or database error) it is
    EINVAL.  The daemon's own message goes to its log and in ``STATUS=``."""
    code = _errno(exc) if isinstance(exc, BaseException) else None
    if code is None:
        code = errnos.EINVAL
    told = notify(f"STATUS={exc}", f"ERRNO={code}")
    _done()
    return told
