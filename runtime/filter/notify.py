"""Notifications to senders, recipients and administrators (guide 6.1.4).

Texts come from templates in the guide's ``%MACRO%`` form; a template containing ``{{`` or
``{%`` is rendered by a sandboxed jinja2 environment instead (macros are its variables, upper and
lower case).  The built-in templates ship as package data next to this module (the installer may
copy them to /etc/kav/5.5/ and point ``[smtpscan.notify] Template`` there).  Header fields are
built only from sanitised single-line text, so CR/LF in a subject or address from the message
cannot add header lines.
"""

from __future__ import annotations

import email.utils
import re
import time
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

from runtime.config import KavConfig
from runtime.config.schema import PRODUCT_NAME, PRODUCT_VERSION

TEMPLATES = Path(__file__).resolve().parent / "templates"
VERSION_TEXT = f"{PRODUCT_NAME} version {PRODUCT_VERSION}/RELEASE"
_MACRO = re.compile(r"%([A-Z]+)%")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def one_line(text: str, limit: int = 900) -> str:
    """Header-safe text: control characters (CR, LF, NUL ...) become spaces."""
    return " ".join(_CTL.sub(" ", text).split())[:limit]


def header_value(text: str) -> str:
    text = one_line(text)
    return text if text.isascii() else Header(text, "utf-8").encode()


def expand(template: str, macros: dict[str, str]) -> str:
    if "{{" in template or "{%" in template:
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
        variables = {**macros, **{k.lower(): v for k, v in macros.items()}}
        return env.from_string(template).render(**variables)
    return _MACRO.sub(lambda m: macros.get(m.group(1), m.group(0)), template)


class Notifier:
    def __init__(self, cfg: KavConfig) -> None:
        self.cfg = cfg
        self.from_addr = cfg.get("smtpscan.general", "NotifyFromAddress")
        self.mime = cfg.get("smtpscan.notify", "MimeType") or "text/plain"
        self.charset = cfg.get("smtpscan.notify", "Charset") or "utf-8"
        self._cache: dict[str, str] = {}

    def template(self, role: str, event: str) -> str:
        path = self.cfg.notify(role, event)["Template"]
        if not path:
            path = str(TEMPLATES / ("template_notify_sender" if role == "sender" else "template_notify_main"))
        if path not in self._cache:
            self._cache[path] = Path(path).read_text(encoding="utf-8", errors="replace")
        return self._cache[path]

    def datetime(self, when: float | None = None) -> str:
        t = time.localtime(when)
        fmt = f"{self.cfg.get('locale', 'DateFormat')} {self.cfg.get('locale', 'TimeFormat')}"
        return time.strftime(fmt, t)

    def build(self, role: str, event: str, to: str, macros: dict[str, str],
              attachments: list[Message] | None = None) -> bytes:
        """One notice as bytes.  ``attachments`` (report, admin copy) make it multipart/mixed."""
        if role == "sender":  # 6.1.4: %ACTION% is not used in notices to senders
            macros = {**macros, "ACTION": ""}
        body = expand(self.template(role, event), macros)
        # A subject is one line: %VIRUSNAME% there is the short form (names, or the status text).
        subject = expand(self.cfg.notify(role, event)["Subject"], {**macros, "VIRUSNAME": macros.get("SHORTNAME", "")})
        subtype = self.mime.split("/", 1)[1] if self.mime.startswith("text/") else "plain"
        text = MIMEText(body, subtype, "us-ascii" if body.isascii() else self.charset)
        if attachments:
            msg: Message = MIMEMultipart("mixed")
            msg.attach(text)
            for a in attachments:
                msg.attach(a)
        else:
            msg = text
        msg["From"] = header_value(self.from_addr)
        msg["To"] = header_value(to)
        msg["Subject"] = header_value(subject)
        msg["Date"] = email.utils.formatdate(localtime=True)
        msg["Message-ID"] = email.utils.make_msgid("kav4ms")
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Anti-Virus-Notice"] = f"{role}; {event}"
        from runtime.filter.mimeedit import serialize

        return serialize(msg, maxheaderlen=78)  # as_bytes() fails on an attached malformed multipart


def report_part(text: str) -> Message:
    part = MIMEText(text, "plain", "us-ascii" if text.isascii() else "utf-8")
    part["Content-Disposition"] = 'inline; filename="anti-virus-report.txt"'
    return part


def message_part(data: bytes) -> Message:
    """The message as a message/rfc822 attachment, byte for byte: it is not parsed (a message the
    filter could not scan may be one the parser cannot take) and not regenerated."""
    part = Message()
    part["Content-Type"] = "message/rfc822"
    part["Content-Disposition"] = 'attachment; filename="original-message.eml"'
    part.set_payload(data.replace(b"\r\n", b"\n").decode("ascii", "surrogateescape"))
    return part
