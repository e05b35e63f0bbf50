"""``compile_plan(System, IntegrationSettings) -> Plan``: a pure function, nothing is read or written.

Why pure: ``--dry-run``, the real install and the tests all see the same plan for the same
facts, and a plan can be printed, diffed and stored in the journal.  Site facts that detection
does not model (ports taken, postmaster aliases) come in through IntegrationSettings (site.py
gathers them once); the edits themselves come from the MTA's module (kavsetup/mta/<name>.py).
"""

from __future__ import annotations

from kavsetup.detect.model import MTAInfo, System
from kavsetup.integrate.edits import Edit, IniValues, Plan
from kavsetup.integrate.settings import IntegrationSettings, validate
from kavsetup.mta import CompileError, integration


def compile_plan(system: System, settings: IntegrationSettings, mta: MTAInfo | None = None) -> Plan:
    """The edits that integrate ``mta`` (default: the active one) as ``settings`` ask."""
    settings = validate(settings)
    target = mta or system.active
    if target is None:
        raise CompileError("no active mail server to integrate with")
    edits, notes = integration(target.kind).plan(system, target, settings)
    return Plan(target.kind.value, tuple(edits), tuple(notes), settings.to_dict(), standing_services(edits))


def standing_services(edits: list[Edit]) -> tuple[tuple[str, str], ...]:
    """The daemons the integration needs running before the MTA is pointed at it, as (name,
    address): smtpscanner whenever the plan sets a ``ListenAddress`` other than ``stdio`` (Postfix's
    daemon form, qmail's socket) -- the same rule its init script and ``kavsetup run`` apply."""
    from kavsetup.services import SMTPSCANNER

    for e in edits:
        if isinstance(e, IniValues):
            for section, key, value in e.values:
                if (section, key) == ("smtpscan.general", "ListenAddress") and value != "stdio":
                    return ((SMTPSCANNER, value),)
    return ()
