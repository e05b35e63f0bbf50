"""Loading, validating and querying ``kav4mailservers.conf``.

The loader reports every problem as ``FILE:LINE: [section] Key: message`` and never drops a
value silently.  Problems that would change what the product does (a bad value, an unknown key)
are errors; spellings the guide itself prints but that are not canonical (``EHL0`` with a zero,
``[smtpscanner.group:...]``, ``LicenseDomain``) are accepted with a warning.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.config import schema
from runtime.config.lexer import Document, Entry
from runtime.config.values import compile_posix


@dataclass(frozen=True)
class Message:
    filename: str
    line: int | None
    section: str | None
    key: str | None
    text: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}:" if self.line else f"{self.filename}:"
        if self.section is not None and self.key is not None:
            return f"{where} [{self.section}] {self.key}: {self.text}"
        if self.section is not None:
            return f"{where} [{self.section}]: {self.text}"
        if self.key is not None:
            return f"{where} {self.key}: {self.text}"
        return f"{where} {self.text}"


class ConfigError(Exception):
    """The file is invalid; ``messages`` holds every error (one line each)."""

    def __init__(self, messages: list[Message]):
        self.messages = messages
        super().__init__("\n".join(str(m) for m in messages))


@dataclass
class Setting:
    """One key as found in the file: its typed value and where it was."""

    key: schema.Key
    value: Any
    raw: str
    lines: list[int]  # 1-based lines (several for a repeated list key)


def _did_you_mean(word: str, candidates: list[str]) -> str:
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.7)
    return f" (did you mean {lowered[close[0]]}?)" if close else ""


@dataclass
class Group:
    """A ``[smtpscan.group:NAME]`` section with the guide's resolution rules (6.1)."""

    name: str
    explicit: dict[str, Any]
    line: int | None = None
    senders: list[re.Pattern[str]] = field(init=False)
    recipients: list[re.Pattern[str]] = field(init=False)

    #: Status-specific defaults used only when neither the status key nor the generic key is set:
    #: 5.2.3 says password-protected archives are delivered by default; cured objects go out cured.
    STATUS_DEFAULTS = {
        ("Protected", "RecipientAction"): "unchanged",
        ("Cured", "RecipientAction"): "cured",
        ("Cured", "AdminAction"): "cured",
    }
    NOTIFY_ATTRS = ("AdminNotify", "SenderNotify", "RecipientNotify")

    def __post_init__(self) -> None:
        self.senders = [compile_posix(p) for p in self.explicit.get("Senders", [])]
        self.recipients = [compile_posix(p) for p in self.explicit.get("Recipients", [])]

    @property
    def is_default(self) -> bool:
        return self.name == "default"

    @property
    def check(self) -> bool:
        return bool(self.get("Check"))

    @property
    def cure(self) -> bool:
        """6.1.2: cure mode is on when Check is on and any ``Cured*`` key is present."""
        return self.check and any(k.startswith("Cured") for k in self.explicit)

    def get(self, key: str) -> Any:
        spec = schema.SECTION_INDEX["smtpscan.group:NAME"].key(key)
        if spec is None:
            raise KeyError(f"no group key {key!r}")
        if spec.name in self.explicit:
            return self.explicit[spec.name]
        return spec.default

    def matches(self, sender: str, recipient: str) -> bool:
        """Both addresses must be in the group (6.1); an unset list means every address, the null
        sender included (the default group 'applies to all messages')."""
        if self.is_default:
            return True
        ok_sender = not self.senders or any(p.search(sender) for p in self.senders)
        ok_rcpt = not self.recipients or any(p.search(recipient) for p in self.recipients)
        return ok_sender and ok_rcpt

    def filtered_name(self, filename: str) -> bool:
        return any(compile_posix(p).search(filename) for p in self.get("FilterByName"))

    def setting(self, status: str, attr: str) -> Any:
        """The effective ``<Status><Attr>`` (guide 5.2.1: per-status keys beat generic ones)."""
        if status not in schema.STATUSES:
            raise KeyError(f"unknown status {status!r}; known: {', '.join(schema.STATUSES)}")
        if attr not in schema.GROUP_ATTRS:
            raise KeyError(f"unknown attribute {attr!r}; known: {', '.join(schema.GROUP_ATTRS)}")
        # 6.2.2: CureFailed objects "are treated according to the rules defined for infected objects".
        chain = [status, "Infected"] if status == "CureFailed" else [status]
        if attr == "Quarantine":
            # Quarantine is the group's switch; <Status>Quarantine picks the statuses (6.1.3, 5.2.5).
            return bool(self.get("Quarantine")) and bool(first_explicit(self.explicit, chain, attr))
        for s in chain:
            if s + attr in self.explicit:
                return self.explicit[s + attr]
        if attr in self.explicit:
            return self.explicit[attr]
        if attr in self.NOTIFY_ATTRS and any(
            st + attr in self.explicit and self.explicit[st + attr] for st in schema.STATUSES
        ):
            # 6.1.4: with per-status notify keys, "notification will only be sent regarding the
            # objects with the specified status".
            return False
        if (status, attr) in self.STATUS_DEFAULTS:
            return self.STATUS_DEFAULTS[(status, attr)]
        return self.get(attr)

    def resolved(self) -> dict[str, dict[str, Any]]:
        """The whole status x attribute matrix, as ``config show`` prints it."""
        return {status: {attr: self.setting(status, attr) for attr in schema.GROUP_ATTRS} for status in schema.STATUSES}


def first_explicit(explicit: dict[str, Any], chain: list[str], attr: str) -> bool | None:
    """First explicitly set value of ``<status><attr>`` along a fallback chain."""
    for s in chain:
        if s + attr in explicit:
            return bool(explicit[s + attr])
    return None


@dataclass
class KavConfig:
    """An effective configuration: the file's values over the schema's defaults."""

    path: Path | None
    filename: str
    document: Document
    sections: dict[str, dict[str, Setting]]
    section_lines: dict[str, int]
    warnings: list[Message]

    # -- plain sections ----------------------------------------------------------------------
    def get(self, section: str, key: str) -> Any:
        section_spec = schema.section_schema(section)
        if section_spec is None:
            raise KeyError(f"unknown section [{section}]")
        spec = section_spec.key(key)
        if spec is None:
            raise KeyError(f"unknown key {key!r} in [{section}]")
        found = self.sections.get(section, {}).get(spec.name)
        if found is not None:
            return found.value
        if section.startswith("smtpscan.notify.") and spec.name in ("Template", "Subject"):
            return self.get("smtpscan.notify", spec.name) if not spec.default else spec.default
        return spec.default

    def section(self, section: str) -> dict[str, Any]:
        section_spec = schema.section_schema(section)
        if section_spec is None:
            raise KeyError(f"unknown section [{section}]")
        if section_spec.name == "smtpscan.group:NAME":
            group = self.group(section.split(":", 1)[1])
            defaults = {k.name: group.get(k.name) for k in section_spec.keys if k.default is not None}
            return defaults | dict(group.explicit)
        return {k.name: self.get(section, k.name) for k in section_spec.keys}

    def notify(self, role: str, event: str) -> dict[str, str]:
        """Template and subject for a role/event, falling back to ``[smtpscan.notify]``."""
        name = f"smtpscan.notify.{role}.{event}"
        own = self.sections.get(name, {})
        return {
            k: (own[k].value if k in own and own[k].value else self.get("smtpscan.notify", k))
            for k in ("Template", "Subject")
        }

    # -- groups ------------------------------------------------------------------------------
    @property
    def groups(self) -> list[Group]:
        """Groups in file order, ``default`` last (6.1: first match wins, default otherwise)."""
        out: list[Group] = []
        default: Group | None = None
        for name, settings in self.sections.items():
            if not name.startswith("smtpscan.group:"):
                continue
            group = Group(
                name.split(":", 1)[1],
                {k: s.value for k, s in settings.items()},
                self.section_lines.get(name),
            )
            if group.is_default:
                default = group
            else:
                out.append(group)
        out.append(default or Group("default", {}))
        return out

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no group [smtpscan.group:{name}]")

    def select_group(self, sender: str, recipient: str) -> Group:
        for group in self.groups:
            if group.matches(sender, recipient):
                return group
        raise AssertionError("the default group matches every message")  # pragma: no cover

    # -- views -------------------------------------------------------------------------------
    def effective(self) -> dict[str, Any]:
        """Every section with its effective values; groups with their resolved matrix."""
        out: dict[str, Any] = {}
        for sec in schema.SECTIONS:
            if sec.pattern:
                continue
            out[sec.name] = self.section(sec.name)
        for name in self.sections:
            if name.startswith("smtpscan.notify.") and name not in out:
                out[name] = {k: self.get(name, k) for k in ("Template", "Subject")}
        for group in self.groups:
            body = self.section(f"smtpscan.group:{group.name}")
            body["CureMode"] = group.cure
            body["resolved"] = group.resolved()
            out[f"smtpscan.group:{group.name}"] = body
        return out


def loads_config(text: str, filename: str = "<string>", path: Path | None = None) -> KavConfig:
    """Parse and validate text; raise :class:`ConfigError` listing every error."""
    doc = Document.parse(text)
    errors: list[Message] = []
    warnings: list[Message] = []
    sections: dict[str, dict[str, Setting]] = {}
    section_lines: dict[str, int] = {}
    known_sections = [s.name for s in schema.SECTIONS if not s.pattern] + ["smtpscan.group:default"]
    # Per section: canonical name per header entry (aliases resolved)
    canon_of: dict[str, tuple[str, bool]] = {}

    def err(e: Entry, section: str | None, key: str | None, msg: str) -> None:
        errors.append(Message(filename, e.lineno, section, key, msg))

    def warn(e: Entry, section: str | None, key: str | None, msg: str) -> None:
        warnings.append(Message(filename, e.lineno, section, key, msg, "warning"))

    for e in doc.entries:
        if e.kind == "section":
            canon, aliased = schema.canonical_section(e.name)
            canon_of[e.name] = (canon, aliased)
            if aliased:
                warn(e, e.name, None, f"accepted as [{canon}] (the canonical spelling)")
            if schema.section_schema(canon) is None:
                hint = _did_you_mean(canon, known_sections)
                if canon.startswith("smtpscan.notify."):
                    hint = hint or " (use smtpscan.notify.ROLE.EVENT with ROLE admin|sender|recipient)"
                err(e, e.name, None, f"unknown section{hint}")
                continue
            if canon in section_lines:
                warn(e, canon, None, f"section repeated (first at line {section_lines[canon]}); merged")
            else:
                section_lines[canon] = e.lineno
            sections.setdefault(canon, {})
        elif e.kind == "junk":
            err(e, None, None, f"cannot parse {e.value!r} (expected [section] or Key=Value)")
        elif e.kind == "key":
            if e.section is None:
                err(e, None, e.name, "key outside any [section]")
                continue
            canon, _ = canon_of.get(e.section, (e.section, False))
            section_spec = schema.section_schema(canon)
            if section_spec is None:
                continue  # the section itself was reported
            spec = section_spec.key(e.name)
            if spec is None:
                err(e, canon, e.name, f"unknown key{_did_you_mean(e.name, section_spec.key_names())}")
                continue
            if e.name != spec.name:
                if e.name.lower() in (a.lower() for a in spec.aliases):
                    warn(e, canon, e.name, f"accepted as {spec.name} (the canonical spelling)")
                else:
                    warn(e, canon, e.name, f"accepted as {spec.name} (keys are case-sensitive in 5.5)")
            try:
                value = spec.type.parse(e.value)
            except ValueError as exc:
                err(e, canon, spec.name, str(exc))
                continue
            bucket = sections.setdefault(canon, {})
            prev = bucket.get(spec.name)
            if prev is not None:
                if spec.type.is_list:
                    prev.value = list(prev.value) + list(value)
                    prev.raw = prev.raw + "," + e.value
                    prev.lines.append(e.lineno)
                    continue
                warn(e, canon, spec.name, f"set again (first at line {prev.lines[0]}); this value wins")
            bucket[spec.name] = Setting(spec, value, e.value, [e.lineno])

    # Cross-key checks.
    for name, settings in sections.items():
        if not name.startswith("smtpscan.group:"):
            continue
        if "Quarantine" not in settings or not settings["Quarantine"].value:
            for status in schema.STATUSES:
                s = settings.get(status + "Quarantine")
                if s is not None and s.value:
                    warnings.append(
                        Message(
                            filename, s.lines[0], name, s.key.name, "has no effect without Quarantine=yes", "warning"
                        )
                    )
    warnings += _limit_conflicts(filename, sections)
    errors += _check_blocking(sections, section_lines, filename)
    if errors:
        raise ConfigError(errors)
    return KavConfig(path, filename, doc, sections, section_lines, warnings)


def _limit_conflicts(filename: str, sections: dict[str, dict[str, Setting]]) -> list[Message]:
    """Limit combinations that cannot work as the administrator probably expects (issue 11):
    mail smtpscanner accepts but aveserver refuses to scan, scans smtpscanner stops waiting for."""

    def value(section: str, key: str) -> tuple[Any, int | None]:
        found = sections.get(section, {}).get(key)
        if found is not None:
            return found.value, found.lines[0]
        spec = schema.SECTION_INDEX[section].key(key)
        assert spec is not None
        return spec.default, None

    out: list[Message] = []
    size, size_line = value("smtpscan.limits", "MaxMessageSize")
    stream, stream_line = value("aveserver.options", "StreamMaxLength")
    if size == 0 or size > stream:
        what = "no limit" if size == 0 else f"{size} bytes"
        out.append(Message(filename, size_line or stream_line, "smtpscan.limits", "MaxMessageSize",
                           f"{what} lets in messages larger than [aveserver.options] StreamMaxLength ({stream}), "
                           "which cannot be scanned: they get each group's Error rules and, when removed, a copy in "
                           "the quarantine; set MaxMessageSize to at most StreamMaxLength", "warning"))
    check, check_line = value("smtpscan.limits", "MaxCheckTime")
    scan, scan_line = value("aveserver.limits", "MaxScanTime")
    if check < scan:
        out.append(Message(filename, check_line or scan_line, "smtpscan.limits", "MaxCheckTime",
                           f"{check}s is shorter than [aveserver.limits] MaxScanTime ({scan}s): a slow scan is "
                           "deferred (4xx) again at every retry instead of being decided", "warning"))
    return out


def _check_blocking(sections: dict[str, dict[str, Setting]], section_lines: dict[str, int],
                    filename: str) -> list[Message]:
    """Our RecipientAction extension (docs/smtpscanner.md, 'Block'): ``discard`` must not lose the
    only copy of a message unless the admin says ``DiscardAllowLoss=yes``; ``reject`` only makes
    sense where the 5xx reaches the sender's client (a before-queue SMTP filter)."""
    out: list[Message] = []
    general = sections.get("smtpscan.general", {})
    spec = schema.SECTION_INDEX["smtpscan.general"]

    def general_value(key: str) -> Any:
        found = general.get(key)
        return found.value if found is not None else spec.key(key).default  # type: ignore[union-attr]

    before_queue = bool(general_value("BeforeQueue")) and general_value("Protocol") == "smtp"
    for name, settings in sections.items():
        if not name.startswith("smtpscan.group:"):
            continue
        group = Group(name.split(":", 1)[1], {k: s.value for k, s in settings.items()})
        by_action: dict[str, list[str]] = {}
        for status in schema.STATUSES:
            by_action.setdefault(str(group.setting(status, "RecipientAction")), []).append(status)

        def line_of(statuses: list[str], settings: dict[str, Setting] = settings, name: str = name) -> int | None:
            for key in [s + "RecipientAction" for s in statuses] + ["RecipientAction"]:
                if key in settings:
                    return settings[key].lines[0]
            return section_lines.get(name)

        rejecting = by_action.get("reject", [])
        if rejecting and not before_queue:
            out.append(Message(filename, line_of(rejecting), name, "RecipientAction",
                               f"reject (for {', '.join(rejecting)}) needs a before-queue SMTP filter: set "
                               "[smtpscan.general] BeforeQueue=yes and Protocol=smtp, or use discard"))
        unsafe = [s for s in by_action.get("discard", [])
                  if not group.setting(s, "Quarantine")
                  and not (group.setting(s, "AdminNotify") and group.get("AdminAddress"))]
        if unsafe and not group.get("DiscardAllowLoss"):
            out.append(Message(filename, line_of(unsafe), name, "RecipientAction",
                               f"discard (for {', '.join(unsafe)}) would lose the message: turn on Quarantine=yes "
                               "with <Status>Quarantine=yes, or the admin copy (AdminNotify=yes and AdminAddress), or "
                               "set DiscardAllowLoss=yes"))
    return out


def load_config(path: str | Path) -> KavConfig:
    """Read a configuration file.  An unreadable file is a :class:`ConfigError` too."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError([Message(str(p), None, None, None, f"cannot read: {exc.strerror}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return loads_config(text, filename=str(p), path=p)
