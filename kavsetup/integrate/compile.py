"""``compile(System, Settings) -> Plan``: a pure function, nothing is read or written.

Why pure: ``--dry-run``, the real install and the tests all see the same plan for the same
facts, and a plan can be printed, diffed and stored in the journal.  Site facts that detection
does not model (ports taken, postmaster aliases) come in through Settings (target.py gathers
them once).
"""

from __future__ import annotations

from kavsetup.detect.model import MTAInfo, MTAKind, System
from kavsetup.integrate.edits import Plan
from kavsetup.integrate.settings import Settings, validate
from kavsetup.mta_patches import exim, postfix, qmail, sendmail
from kavsetup.mta_patches.common import CompileError

_PATCHES = {MTAKind.POSTFIX: postfix.plan, MTAKind.SENDMAIL: sendmail.plan,
            MTAKind.EXIM: exim.plan, MTAKind.QMAIL: qmail.plan}


def compile_plan(system: System, settings: Settings, mta: MTAInfo | None = None) -> Plan:
    """The edits that integrate ``mta`` (default: the active one) as ``settings`` ask."""
    settings = validate(settings)
    target = mta or system.active
    if target is None:
        raise CompileError("no active mail server to integrate with")
    edits, notes = _PATCHES[target.kind](system, target, settings)
    return Plan(target.kind.value, tuple(edits), tuple(notes), settings.to_dict())


compile = compile_plan  # noqa: A001 - the design's name for it (design.md)
