"""IntegrationSettings: the administrator's choices plus site facts that detection does not model.

``compile_plan(System, IntegrationSettings)`` is pure, so anything it needs beyond ``System`` must be in here:
the answers (defaults <- answers file <- console prompts, guide 3.4) and a few facts read once
by the command layer (ports already taken, the postmaster aliases for kavadministrators,
whether shadow files exist).  Everything is a plain value so the journal can store it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from runtime.layout import GUIDE_PREFIX, HOST, LAYOUTS, OSLayout

PREFIX = GUIDE_PREFIX


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class IntegrationSettings:
    """How to integrate (answers) and what the site holds (facts); unrelated to the engine's
    runtime settings."""

    # answers (guide 4.4.5, 6.6)
    protocol: str = "lmtp"              # [smtpscan.general] Protocol: how the MTA talks to smtpscanner
    # daemon (smtpscanner listens itself; the default, issue 20: docs/integration.md says why) |
    # spawn (guide 4.4.3: Postfix starts smtpscanner per connection) |
    # proxy (the same standing smtpscanner as Postfix's before-queue filter, SMTPD_PROXY_README)
    postfix_mode: str = "daemon"
    filter_host: str = "127.0.0.1"
    filter_port: int = 10025
    reinject_port: int = 10026
    maxproc: int = 10
    chain: bool = False                  # keep an existing content_filter behind ours
    notify_from: str = ""                # NotifyFromAddress ("" keeps the default)
    admin_address: str = ""              # [smtpscan.group:default] AdminAddress ("" keeps the default)
    domains: str = ""                    # [smtpscan.license] LicenseDomains, guide 5.4.1 ("" keeps .*)
    update_source: str = ""              # [updater.options] UpdateServerUrl, guide 5.1.1 ("" keeps the list)
    proxy: str = ""                      # [updater.options] ProxyAddress, guide 5.1.5 ("" none)
    mta_config: str = ""                 # the MTA's main file as answered (reconfigure starts from it)
    import_from: str = ""                # a 5.0/4.x configuration whose settings seed kav4mailservers.conf
    prefix: str = PREFIX
    layout: str = HOST.name               # the target's OS layout (runtime/layout.py); site.py sets it
    conf_file: str = HOST.conf_file
    user: str = "kluser"
    group: str = "filter"
    spool: str = "/var/spool/filter"
    unit_dir: str = "/etc/systemd/system"
    # site facts gathered by the command (not answers)
    taken_ports: tuple[int, ...] = ()
    postmasters: tuple[str, ...] = ()
    filter_overrides: tuple[str, ...] = ()   # Postfix services with their own -o content_filter=
    # Postfix master.cf services that take mail in (smtpd, pickup) as (service/type, entry text):
    # the proxy form adds its -o options to them (kavsetup/mta/postfix.py)
    receivers: tuple[tuple[str, str], ...] = ()
    conf_default_text: str = ""
    nologin: str = "/usr/sbin/nologin"
    xforward: bool = field(default=False)

    def to_dict(self) -> dict[str, Any]:
        """For the journal: the answers and facts, without the 18 KB default file text."""
        doc = asdict(self)
        doc.pop("conf_default_text", None)
        return doc

    @property
    def os_layout(self) -> OSLayout:
        return LAYOUTS[self.layout]

    def with_(self, **kw: Any) -> IntegrationSettings:
        return replace(self, **kw)


#: How Postfix hands mail to smtpscanner (the ``postfix_mode`` answer), the default first.
POSTFIX_MODES = ("daemon", "spawn", "proxy")

ANSWER_KEYS = ("protocol", "postfix_mode", "filter_host", "filter_port", "reinject_port", "maxproc",
               "chain", "notify_from", "admin_address", "user", "group", "spool", "domains", "update_source",
               "proxy", "import_from")


def validate(s: IntegrationSettings) -> IntegrationSettings:
    if s.protocol not in ("lmtp", "smtp"):
        raise SettingsError(f"protocol: {s.protocol!r} is not lmtp or smtp (guide 6.6.4)")
    if s.postfix_mode not in POSTFIX_MODES:
        raise SettingsError(f"postfix_mode: {s.postfix_mode!r} is not {', '.join(POSTFIX_MODES[:-1])} "
                            f"or {POSTFIX_MODES[-1]}")
    for name in ("filter_port", "reinject_port"):
        v = getattr(s, name)
        if not 0 < v < 65536:
            raise SettingsError(f"{name}: {v} is not a TCP port")
    for name in ("notify_from", "admin_address"):
        v = getattr(s, name)
        if any(c in v for c in "\r\n\0 ,"):
            raise SettingsError(f"{name}: {v!r} is not a single mail address")
    if s.domains:
        from runtime.config.values import RegexList

        try:
            RegexList().parse(s.domains)
        except ValueError as exc:
            raise SettingsError(f"domains: {exc} (POSIX regexes, guide 5.4.1)") from None
    for name in ("update_source", "proxy", "import_from"):
        v = getattr(s, name)
        if any(c in v for c in "\r\n\0 "):
            raise SettingsError(f"{name}: {v!r} must be one word without spaces")
    for name in ("user", "group"):
        v = getattr(s, name)
        if not v.replace("-", "").replace("_", "").isalnum():
            raise SettingsError(f"{name}: {v!r} is not a valid account name")
    return s
