"""``kavqmailqueue``: qmail's ``qmail-queue`` as a client of the running smtpscanner (guide 4.4.2).

Why (issue 11): the guide installs a set-uid ``qmail-queue`` script, but Linux ignores set-uid on
scripts, so it ran as whoever submitted mail (qmaild, any local user) and could not open the
filter's files. Nothing here needs a privilege: qmail-smtpd and qmail-inject run this program as
themselves, it hands the message and envelope over smtpscanner's UNIX socket (SMTP, one session per
message) and maps the answer to qmail-queue(8)'s exit codes; smtpscanner, running as the filter's
account, scans and passes the mail to the original program (``ForwardMailer=qmail:(queue.kav55)``).

qmail-queue(8) contract: the message on descriptor 0, the envelope on descriptor 1 as
``F<sender>\\0T<rcpt>\\0...\\0``; exit 0 queued, 11 address too long, 31 permanent refusal,
54 message/envelope unreadable, 71 temporary refusal, 72 timeout, 73 connection refused,
74 communication failed, 81 internal bug, 91 envelope format error. A ``Received:`` line records
the submitting uid, as qmail-queue's own does, since the original now sees only the filter's uid.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import socket
import sys
import time
from email.utils import formatdate

SOCKET = "/run/kav4mailservers/qmail-queue.sock"
MAX_ADDR = 1000  # qmail-queue's own limit (exit 11)

QUEUED, TOO_LONG, REFUSED, UNREADABLE, TEMPFAIL, TIMEOUT, CONN_REFUSED, COMM_FAILED, BUG, BAD_ENVELOPE = (
    0, 11, 31, 54, 71, 72, 73, 74, 81, 91)


class _UnixSMTP(smtplib.SMTP):
    """smtplib over a UNIX stream socket (its ``host`` is the socket path)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:  # type: ignore[override]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(host)
        except BaseException:
            sock.close()
            raise
        return sock


def parse_envelope(data: bytes) -> tuple[str, list[str]]:
    """``F<sender>\\0T<rcpt>\\0...\\0`` -> (sender, recipients); ValueError on a malformed one."""
    if not data.startswith(b"F") or not data.endswith(b"\0\0"):
        raise ValueError("envelope does not start with F or lacks the final empty field")
    fields = data[:-1].split(b"\0")[:-1]
    sender = fields[0][1:].decode("utf-8", "surrogateescape")
    rcpts = []
    for f in fields[1:]:
        if not f.startswith(b"T") or len(f) < 2:
            raise ValueError(f"bad envelope field {f[:40]!r}")
        rcpts.append(f[1:].decode("utf-8", "surrogateescape"))
    if not rcpts:
        raise ValueError("no recipient")
    return sender, rcpts


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def submit(message: bytes, sender: str, rcpts: list[str], path: str, timeout: float) -> int:
    """One SMTP session with smtpscanner; the qmail-queue exit code."""
    try:
        smtp = _UnixSMTP(path, timeout=timeout, local_hostname="localhost")
    except (FileNotFoundError, ConnectionRefusedError, PermissionError):
        return CONN_REFUSED
    except TimeoutError:
        return TIMEOUT
    except (OSError, smtplib.SMTPException):
        return COMM_FAILED
    try:
        refused = smtp.sendmail(sender, rcpts, message)
        smtp.quit()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [c for c, _ in exc.recipients.values()]
        return REFUSED if all(500 <= c < 600 for c in codes) else TEMPFAIL
    except smtplib.SMTPResponseException as exc:  # sender refused, DATA refused, or the final answer
        return REFUSED if 500 <= exc.smtp_code < 600 else TEMPFAIL
    except TimeoutError:
        return TIMEOUT
    except (OSError, smtplib.SMTPException):
        return COMM_FAILED
    if refused:  # some recipients took it: qmail-queue has one answer, and retrying would duplicate
        print(f"kavqmailqueue: refused by smtpscanner for {', '.join(sorted(refused))}", file=sys.stderr)
    return QUEUED


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kavqmailqueue", description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", default=SOCKET, help="smtpscanner's ListenAddress=unix:PATH (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per SMTP step (default %(default)s)")
    args = ap.parse_args(argv)
    try:
        message = _read_all(0)
        envelope = _read_all(1)
    except OSError:
        return UNREADABLE
    try:
        sender, rcpts = parse_envelope(envelope)
    except ValueError:
        return BAD_ENVELOPE
    if any(len(a) > MAX_ADDR for a in (sender, *rcpts)):
        return TOO_LONG
    received = (f"Received: (kav4mailservers qmail-queue client {os.getpid()} invoked by uid {os.getuid()}); "
                f"{formatdate(time.time())}\n").encode()
    try:
        return submit(received + message, sender, rcpts, args.socket, args.timeout)
    except Exception as exc:  # noqa: BLE001 - qmail-queue's "internal bug" rather than a traceback
        print(f"kavqmailqueue: {exc!r}", file=sys.stderr)
        return BUG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
