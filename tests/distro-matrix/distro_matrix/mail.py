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
        argv += ["--attach-type", "application/octet-stream", "--attach-name", attachment_name, "--attach", rel]
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
