"""Import settings from an earlier installation (guide 1.1: "import configuration settings from
earlier versions (4.0 or 5.0)").

What the earlier files look like is recorded in docs/formats.md:

* **5.0** uses the same INI dialect and sections as 5.5, but booleans may be ``true/false`` and
  address masks may be shell wildcards (``*@example.com``) where 5.5 wants POSIX regexes.
* **4.x** ("AVP for Unix") keeps ``AvpUnix.ini`` plus scan profiles (``defUnix.prf``) whose
  ``[Object]`` switches map onto ``[scanner.options]``.

The result is a *settings mapping* for :func:`kavsetup.conffile.render_config` plus one message per
key that could not be carried over, in the loader's ``FILE:LINE: [section] Key: message`` form —
nothing is dropped silently.  Paths that point into the old product's own tree are not copied:
5.5 keeps its own layout, and pointing the new daemon at the old databases would break on the
old package's removal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.config import Message, schema, values
from runtime.config.lexer import Document
from runtime.config.values import compile_posix

#: Where earlier versions kept their configuration, relative to the root (format notes).
CANDIDATES_50 = (
    "etc/kav/5.0/kav4mailservers/kav4mailservers.conf",
    "etc/kav/5.0/kav4mailservers.conf",
    "usr/local/etc/kav/5.0/kav4mailservers/kav4mailservers.conf",
)
CANDIDATES_4X = (
    "opt/AVP/AvpUnix.ini",
    "etc/AVP/AvpUnix.ini",
    "opt/kav/AvpUnix.ini",
    "usr/local/share/AVP/AvpUnix.ini",
)
OLD_TREES = ("/opt/kav/5.0", "/var/db/kav/5.0", "/etc/kav/5.0", "/opt/AVP", "/opt/kav/bin", "/var/log/kav/5.0")
MASK_KEYS = ("Senders", "Recipients", "LicenseDomains", "FilterByName")

# 4.x profile [Object] switches -> 5.5 [scanner.options] keys.
PROFILE_OBJECT_MAP = {
    "Packed": "Packed",
    "Archives": "Archives",
    "SelfExtArchives": "SelfExtArchives",
    "MailBases": "MailBases",
    "MailPlain": "MailPlain",
    "SubDirectories": "Recursion",
    "CrossFs": "CrossFs",
}


@dataclass
class Imported:
    source: Path | None
    version: str | None  # "5.0", "4.x" or None when nothing was found
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)

    def put(self, section: str, key: str, value: Any) -> None:
        self.settings.setdefault(section, {})[key] = value


_REGEX_HINTS = re.compile(r"\\|\.\*|\.\+|\^|\$|\[|\(|\|")


def wildcard_to_regex(mask: str) -> str:
    """Convert a shell wildcard (``*@example.com``) to a POSIX regex (``.*@example\\.com``)."""
    out = []
    for ch in mask:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch in ".+(){}|^$\\[]":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def convert_mask(mask: str) -> str:
    """5.0 masks may be wildcards or regexes; a mask reads as a regex only when it compiles and
    uses regex syntax, so ``*@example.com`` (not a valid regex) and ``user@example.com`` (a
    wildcard whose dot would otherwise match any character) both come out escaped."""
    if _REGEX_HINTS.search(mask):
        try:
            compile_posix(mask)
            return mask
        except ValueError:
            pass
    return wildcard_to_regex(mask)


def _is_old_path(value: str) -> bool:
    return any(value == t or value.startswith(t + "/") for t in OLD_TREES)


def import_50(path: Path) -> Imported:
    """Carry a 5.0 ``kav4mailservers.conf`` over to 5.5 settings."""
    result = Imported(path, "5.0")
    doc = Document.parse(path.read_text(encoding="utf-8", errors="replace"))
    fname = str(path)
    for e in doc.entries:
        if e.kind == "junk":
            result.messages.append(Message(fname, e.lineno, e.section, None, f"cannot parse {e.value!r}; not imported"))
        if e.kind != "key" or e.section is None:
            continue
        section, _ = schema.canonical_section(e.section)
        section_spec = schema.section_schema(section)
        if section_spec is None:
            result.messages.append(Message(fname, e.lineno, e.section, e.name, "section unknown to 5.5; not imported"))
            continue
        spec = section_spec.key(e.name)
        if spec is None:
            result.messages.append(Message(fname, e.lineno, section, e.name, "key unknown to 5.5; not imported"))
            continue
        raw = e.value
        if spec.name in MASK_KEYS:
            raw = ",".join(convert_mask(m) for m in values.split_list(raw))
        if isinstance(spec.type, values.Path) and raw and _is_old_path(raw):
            result.messages.append(
                Message(fname, e.lineno, section, spec.name, f"{raw} belongs to the old installation; 5.5 default kept")
            )
            continue
        try:
            value = spec.type.parse(raw)
        except ValueError as exc:
            result.messages.append(Message(fname, e.lineno, section, spec.name, f"{exc}; not imported"))
            continue
        if spec.type.is_list and spec.name in result.settings.get(section, {}):
            value = list(result.settings[section][spec.name]) + list(value)  # repeated key = list
        result.put(section, spec.name, value)
    return result


def _parse_ini(path: Path) -> dict[str, dict[str, tuple[str, int, str]]]:
    """``{section.lower(): {key.lower(): (value, line, key as written)}}``: 4.x keys are case-blind."""
    doc = Document.parse(path.read_text(encoding="latin-1"))
    out: dict[str, dict[str, tuple[str, int, str]]] = {}
    for e in doc.entries:
        if e.kind == "key" and e.section is not None:
            out.setdefault(e.section.lower(), {})[e.name.lower()] = (e.value, e.lineno, e.name)
    return out


def import_4x(ini: Path) -> Imported:
    """Carry the 4.x scan profile switches over to ``[scanner.options]``."""
    result = Imported(ini, "4.x")
    avp = _parse_ini(ini)
    profile_name = avp.get("avp32", {}).get("defaultprofile", ("defUnix.prf", 0, ""))[0]
    profile = ini.parent / Path(profile_name).name
    if not profile.is_file():
        result.messages.append(Message(str(ini), None, "AVP32", "DefaultProfile", f"profile {profile} not found"))
        return result
    prf = _parse_ini(profile)
    obj = prf.get("object", {})
    for old, new in PROFILE_OBJECT_MAP.items():
        if old.lower() in obj:
            raw, line, _ = obj[old.lower()]
            try:
                result.put("scanner.options", new, values.Bool().parse(raw))
            except ValueError as exc:
                result.messages.append(Message(str(profile), line, "Object", old, f"{exc}; not imported"))
    # InfectedAction: 0 report only, 1 ask (no console in a daemon: report), 2 cure, 3 delete.
    if "infectedaction" in obj:
        raw, line, _ = obj["infectedaction"]
        if raw.strip() in ("2",):
            result.put("scanner.options", "Cure", True)
        elif raw.strip() == "3":
            result.put("scanner.object", "OnInfected", "remove")
        elif raw.strip() not in ("0", "1"):
            result.messages.append(Message(str(profile), line, "Object", "InfectedAction", f"{raw!r} unknown"))
    known = {k.lower() for k in PROFILE_OBJECT_MAP} | {"infectedaction"}
    for key, (_, line, written) in obj.items():
        if key not in known:
            result.messages.append(Message(str(profile), line, "Object", written, "no 5.5 equivalent; not imported"))
    return result


def find_and_import(root: Path = Path("/")) -> Imported:
    """Import from the newest earlier installation under ``root``; nothing found is not an error."""
    for rel in CANDIDATES_50:
        path = root / rel
        if path.is_file():
            return import_50(path)
    for rel in CANDIDATES_4X:
        path = root / rel
        if path.is_file():
            return import_4x(path)
    return Imported(None, None)
