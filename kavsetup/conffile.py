"""Compile ``kav4mailservers.conf`` from the schema and the site's settings (first half of the
installer's compile step; guide 4.1 "Default application settings").

``settings`` maps a section name to ``{Key: value}``; groups are sections named
``smtpscan.group:NAME``.  Values go through the schema's own types, so a bad answer from an
answers file fails here with the key named, before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2

from runtime.config import schema
from runtime.config.editor import normalise
from runtime.layout import HOST, OSLayout, localize

#: The default group body used by front-ends of the time (format notes), which matches the
#: guide's 4.1/6.1.1 description; the Cured* keys turn cure mode on (6.1.2, 4.1 "disinfects").
DEFAULT_GROUP: dict[str, Any] = {
    "Check": True,
    "AdminAddress": "postmaster@localhost",
    "QuarantinePath": f"{schema.DB_DIR}/quarantine",
    "Quarantine": False,
    "AddXHeaders": True,
    "AdminNotify": True,
    "AdminAction": "unchanged",
    "SenderNotify": False,
    "RecipientNotify": True,
    "RecipientAttachReport": True,
    "RecipientAction": "remove",
    "CuredAdminAction": "cured",
    "CuredRecipientAction": "cured",
    "ProtectedRecipientAction": "unchanged",
}

#: 6.1.1: administrators receive what is addressed to them unchanged (they may be sent infected
#: copies on purpose); the installer fills Recipients from the postmaster aliases.
ADMIN_GROUP: dict[str, Any] = {
    "Recipients": ["^postmaster@localhost$"],  # anchored: see kavsetup.mta.common.admin_masks
    "Check": True,
    "AddXHeaders": True,
    "AdminNotify": False,
    "SenderNotify": False,
    "RecipientNotify": False,
    "RecipientAction": "unchanged",
    "AdminAction": "unchanged",
    "Quarantine": False,
}

_GROUP_PREAMBLE = {
    "kavadministrators": [
        "Administrators' own mail (6.1.1): kavsetup adds the postmaster aliases to Recipients.",
        "Groups are tried in file order; the first whose Senders AND Recipients match wins.",
    ],
    "default": [
        "Everybody not in an earlier group (6.1). Generic keys (RecipientAction, AdminNotify, ...)",
        "apply to every status; <Status><Key> overrides them for one status, Status being one of",
        ", ".join(schema.STATUSES) + ".",
        "Check=yes plus any Cured* key turns cure mode on (6.1.2).",
    ],
}


def _key_comment(spec: schema.Key) -> str:
    text = spec.doc
    if spec.note:
        text += f" Default: {spec.note}"
    return f"{text} ({spec.type.describe()}; guide {spec.guide})"


def _group_items(body: Mapping[str, Any]) -> list[dict[str, str]]:
    group_spec = schema.SECTION_INDEX["smtpscan.group:NAME"]
    items = []
    for key, value in body.items():
        a = normalise("smtpscan.group:x", key, value)
        spec = group_spec.key(a.key)
        assert spec is not None
        items.append(
            {
                "key": a.key,
                "value": a.value,
                "comment": _key_comment(spec)
                if key in ("Check", "Quarantine", "RecipientAction", "AdminAction", "Recipients")
                else "",
            }
        )
    return items


def build_sections(settings: Mapping[str, Mapping[str, Any]] | None = None,
                   layout: OSLayout = HOST) -> list[dict[str, Any]]:
    """The sections to render; ``layout``: the OS the file is for (its defaults' configuration
    directory, e.g. /usr/local/etc/kav on FreeBSD; runtime/layout.py)."""
    settings = dict(settings or {})
    out: list[dict[str, Any]] = []
    for section in schema.SECTIONS:
        if section.pattern:
            continue
        overrides = {
            normalise(section.name, k, v).key: normalise(section.name, k, v).value
            for k, v in settings.pop(section.name, {}).items()
        }
        items = []
        for spec in section.keys:
            value = overrides.pop(spec.name, None)
            if value is None:
                value = localize(spec.default_text(), layout)
            items.append({"key": spec.name, "value": value, "comment": _key_comment(spec)})
        out.append({"name": section.name, "guide": section.guide, "doc": section.doc, "preamble": [], "items": items})
        if section.name == "smtpscan.report":
            # Groups sit after the smtpscanner sections, kavadministrators first (tried in order).
            groups = {"kavadministrators": dict(ADMIN_GROUP), "default": dict(DEFAULT_GROUP)}
            extra = [n for n in settings if n.startswith("smtpscan.group:")]
            for name in extra:
                gname = name.split(":", 1)[1]
                groups.setdefault(gname, {}).update(settings.pop(name))
            order = ["kavadministrators"] + [g for g in groups if g not in ("kavadministrators", "default")]
            for gname in order + ["default"]:
                out.append(
                    {
                        "name": f"smtpscan.group:{gname}",
                        "guide": "6.1",
                        "doc": "group " + gname,
                        "preamble": _GROUP_PREAMBLE.get(gname, []),
                        "items": _group_items(groups[gname]),
                    }
                )
    for name, body in settings.items():  # notify ROLE.EVENT sections and other pattern sections
        if schema.section_schema(name) is None:
            raise KeyError(f"unknown section [{name}]")
        out.append(
            {
                "name": name,
                "guide": "6.1.4",
                "doc": "per role/event notification",
                "preamble": [],
                "items": [
                    {"key": normalise(name, k, v).key, "value": normalise(name, k, v).value, "comment": ""}
                    for k, v in body.items()
                ],
            }
        )
    return out


def render_config(settings: Mapping[str, Mapping[str, Any]] | None = None, origin: str = "",
                  layout: OSLayout = HOST) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kavsetup", "templates"),
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - a configuration file, not HTML
        undefined=jinja2.StrictUndefined,
    )
    text = env.get_template("kav4mailservers.conf.j2").render(
        product=schema.PRODUCT_NAME, version=schema.PRODUCT_VERSION, origin=origin,
        sections=build_sections(settings, layout)
    )
    return text.rstrip("\n") + "\n"
