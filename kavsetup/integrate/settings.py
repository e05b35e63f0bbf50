"""IntegrationSettings: the administrator's choices plus site facts that detection does not model.

``compile_plan(System, IntegrationSettings)`` is pure, so anything it needs beyond ``System`` must be in here:
the answers (defaults <- answers file <- console prompts, guide 3.4) and a few facts read once
by the command layer (ports already taken, the postmaster aliases for kavadministrators,
whether shadow files exist).  Everything is a plain value so the journal can store it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PREFIX = "/opt/kav/5.5/kav4mailservers"
CONF_DIR = "/etc/kav/5.5/kav4mailservers"
CONF_FILE = f"{CONF_DIR}/kav4mailservers.conf"


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class IntegrationSettings:
    """How to integrate (answers) and what the site holds (facts); unrelated to the engine's
    runtime settings."""

    # answers (guide 4.4.5, 6.6)
    protocol: str = "lmtp"              # [smtpscan.general] Protocol: how the MTA talks to smtpscanner
    postfix_mode: str = "spawn"          # spawn (guide 4.4.3) | daemon (smtpscanner listens itself)
    filter_host: str = "127.0.0.1"
    filter_port: int = 10025
    reinject_port: int = 10026
    maxproc: int = 10
    chain: bool = False                  # keep an existing content_filter behind ours
    notify_from: str = ""                # NotifyFromAddress ("" keeps the default)
    admin_address: str = ""              # [smtpscan.group:default] AdminAddress ("" keeps the default)
    prefix: str = PREFIX
    conf_file: str = CONF_FILE
    user: str = "kluser"
    group: str = "filter"
    spool: str = "/var/spool/filter"
    unit_dir: str = "/etc/systemd/system"
    # site facts gathered by the command (not answers)
    taken_ports: tuple[int, ...] = ()
    postmasters: tuple[str, ...] = ()
    filter_overrides: tuple[str, ...] = ()   # Postfix services with their own -o content_filter=
    conf_default_text: str = ""
    nologin: str = "/usr/sbin/nologin"
    xforward: bool = field(default=False)

    def to_dict(self) -> dict[str, Any]:
        """For the journal: the answers and facts, without the 18 KB default file text."""
        doc = asdict(self)
        doc.pop("conf_default_text", None)
        return doc

    def with_(self, **kw: Any) -> IntegrationSettings:
        return replace(self, **kw)


ANSWER_KEYS = ("protocol", "postfix_mode", "filter_host", "filter_port", "reinject_port", "maxproc",
               "chain", "notify_from", "admin_address", "user", "group", "spool")


def validate(s: IntegrationSettings) -> IntegrationSettings:
    if s.protocol not in ("lmtp", "smtp"):
        raise SettingsError(f"protocol: {s.protocol!r} is not lmtp or smtp (guide 6.6.4)")
    if s.postfix_mode not in ("spawn", "daemon"):
        raise SettingsError(f"postfix_mode: {s.postfix_mode!r} is not spawn or daemon")
    for name in ("filter_port", "reinject_port"):
        v = getattr(s, name)
        if not 0 < v < 65536:
            raise SettingsError(f"{name}: {v} is not a TCP port")
    for name in ("notify_from", "admin_address"):
        v = getattr(s, name)
        if any(c in v for c in "\r\n\0 ,"):
            raise SettingsError(f"{name}: {v!r} is not a single mail address")
    for name in ("user", "group"):
        v = getattr(s, name)
        if not v.replace("-", "").replace("_", "").isalnum():
            raise SettingsError(f"{name}: {v!r} is not a valid account name")
    return s


def load_answers(path: Path, base: IntegrationSettings) -> IntegrationSettings:
    """YAML answers file (``--answers``): keys as in ANSWER_KEYS; unknown keys are errors."""
    from ruamel.yaml import YAML, YAMLError

    try:
        doc = YAML(typ="safe").load(path.read_text())
    except (OSError, YAMLError) as exc:
        raise SettingsError(f"{path}: {exc}".splitlines()[0]) from exc
    if doc is None:
        return base
    if not isinstance(doc, dict):
        raise SettingsError(f"{path}: expected a mapping of answers")
    types = {f.name: f.type for f in fields(IntegrationSettings)}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in ANSWER_KEYS:
            raise SettingsError(f"{path}: {key}: unknown answer (known: {', '.join(ANSWER_KEYS)})")
        want = types[key]
        if want == "int" and not isinstance(value, int):
            raise SettingsError(f"{path}: {key}: expected a number, got {value!r}")
        if want == "bool" and not isinstance(value, bool):
            raise SettingsError(f"{path}: {key}: expected yes/no, got {value!r}")
        if want == "str":
            value = str(value)
        out[key] = value
    return validate(replace(base, **out))
