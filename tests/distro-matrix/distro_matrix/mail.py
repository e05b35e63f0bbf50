"""Sending with swaks inside a sandbox and reading what a user would see: the mbox in /var/mail.

Each message carries a unique token in its Subject so a scenario finds exactly its own message (and
its notices, which quote the subject) among whatever else the mailbox holds.
"""

from __future__ import annotations

import mailbox
import re
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from .sandbox import Sandbox
from .spec import HOSTNAME

# The EICAR test file (guide chapter 8), assembled from two halves so this source file is not itself
# flagged by a scanner on the developer's machine.
EICAR = (r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-" + r"ANTIVIRUS-TEST-FILE!$H+H*").encode()


@dataclass
class Sent:
    token: str
    returncode: int
    last_reply: str
    transcript: str

    @property
    def accepted(self) -> bool:
        return self.returncode == 0 and self.last_reply.startswith("2")


def token() -> str:
    return "kavmatrix-" + uuid.uuid4().hex[:12]


def send(
    sb: Sandbox,
    to: str,
    *,
    sender: str = "bob@example.org",
    subject_token: str | None = None,
    attachment: bytes | None = None,
    attachment_name: str = "eicar.com",
    port: int = 25,
) -> Sent:
    """One message over SMTP to 127.0.0.1:port inside the sandbox's namespace."""
    tok = subject_token or token()
    argv = [
        "swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.example.org",
        "--from", sender, "--to", to, "--header", f"Subject: test {tok}",
        "--body", f"Body of {tok}\n", "--timeout", "60",
    ]  # fmt: skip
    if attachment is not None:
        rel = f"/tmp/{tok}-{attachment_name}"
        sb.path(rel).write_bytes(attachment)
        # "@file": swaks >= 20240103 (trixie) attaches a bare argument as literal text, not the file.
        argv += ["--attach-type", "application/octet-stream", "--attach-name", attachment_name, "--attach", "@" + rel]
    r = sb.run(argv, timeout=120)
    replies = re.findall(r"^<[-~*]{0,2}\s+(\d{3}[ -].*)$", r.stdout, re.M)
    # The reply that matters is the one to the end of DATA (or the first refusal): the one before QUIT's.
    last = replies[-2] if len(replies) >= 2 and replies[-1].startswith("221") else (replies[-1] if replies else "")
    return Sent(tok, r.returncode, last, r.stdout[-3000:] + r.stderr[-1000:])


def messages(sb: Sandbox, user: str) -> list[Message]:
    path = sb.path(f"/var/mail/{user}")
    if not path.exists():
        return []
    box = mailbox.mbox(str(path), create=False)
    try:
        return [box.get_message(k) for k in box.keys()]
    finally:
        box.close()


def find(sb: Sandbox, user: str, needle: str) -> list[Message]:
    """Messages in user's mailbox whose raw text mentions `needle` (a token)."""
    return [m for m in messages(sb, user) if needle in m.as_string()]


def wait_for(sb: Sandbox, user: str, needle: str, timeout: float = 30, count: int = 1) -> list[Message]:
    deadline = time.monotonic() + timeout
    while True:
        found = find(sb, user, needle)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def local(user: str) -> str:
    return f"{user}@{HOSTNAME}"


def mailbox_path(user: str) -> Path:
    return Path("/var/mail") / user


# -- qmail: no SMTP daemon exists around the stand-in, so mail goes in through qmail-queue(8) (what
# qmail-smtpd and qmail-inject call) and "delivered to the user" means "queued for the user".

_QMAIL_INJECT = r"""
import os, subprocess, sys
msg = open(sys.argv[1], "rb").read()
env = open(sys.argv[2], "rb").read()
r_msg, w_msg = os.pipe()
r_env, w_env = os.pipe()
p = subprocess.Popen(["/var/qmail/bin/qmail-queue"], stdin=r_msg, stdout=r_env, close_fds=True)
os.close(r_msg); os.close(r_env)
os.write(w_msg, msg); os.close(w_msg)
os.write(w_env, env); os.close(w_env)
sys.exit(p.wait())
"""


def qmail_send(
    sb: Sandbox, to: str, *, sender: str = "bob@example.org", attachment: bytes | None = None,
    attachment_name: str = "eicar.com",
) -> Sent:
    """Queue one message through /var/qmail/bin/qmail-queue; `last_reply` is the exit code."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    tok = token()
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, f"test {tok}"
    m["Date"], m["Message-ID"] = formatdate(), make_msgid(domain="client.example.org")
    m.set_content(f"Body of {tok}\n")
    if attachment is not None:
        m.add_attachment(attachment, maintype="application", subtype="octet-stream", filename=attachment_name)
    sb.path(f"/tmp/{tok}.msg").write_bytes(m.as_bytes())
    sb.path(f"/tmp/{tok}.env").write_bytes(f"F{sender}\0T{to}\0\0".encode())
    r = sb.run(["python3", "-c", _QMAIL_INJECT, f"/tmp/{tok}.msg", f"/tmp/{tok}.env"], timeout=120)
    code = str(r.returncode)
    return Sent(tok, r.returncode, "250 queued" if r.returncode == 0 else f"qmail-queue exit {code}", r.stderr)


def qmail_queued(sb: Sandbox) -> list[tuple[list[str], Message]]:
    """(envelope recipients, message) for everything in the stand-in's queue."""
    from email import message_from_bytes

    out = []
    todo = sb.path("/var/qmail/queue/todo")
    for entry in sorted(todo.iterdir()) if todo.exists() else []:
        env = sb.path(f"/var/qmail/queue/intd/{entry.name}").read_bytes()
        rcpts = [f[1:].decode(errors="replace") for f in env.split(b"\0") if f.startswith(b"T")]
        out.append((rcpts, message_from_bytes(sb.path(f"/var/qmail/queue/mess/{entry.name}").read_bytes())))
    return out


def qmail_find(sb: Sandbox, user: str, needle: str) -> list[Message]:
    return [m for rcpts, m in qmail_queued(sb)
            if any(r.split("@")[0] == user for r in rcpts) and needle in m.as_string()]  # fmt: skip
