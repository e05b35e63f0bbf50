"""The envelope of a message as smtpscanner received it (what must reach the next hop unchanged)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipient:
    """A recipient and its RCPT parameters, kept verbatim (DSN NOTIFY/ORCPT, guide 6.6.1)."""

    address: str
    params: tuple[str, ...] = ()


@dataclass
class Envelope:
    sender: str  # "" is the null sender
    recipients: list[Recipient]
    mail_params: list[str] = field(default_factory=list)  # verbatim: BODY=, RET=, ENVID=, SMTPUTF8
    xforward: dict[str, str] = field(default_factory=dict)  # XFORWARD attributes (guide 6.6.3)
    helo: str = ""
    peer: str = ""

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self.recipients]
