"""One home per mail server: ``kavsetup/mta/<name>.py`` holds everything integration knows about
it (guide 4.4.1-4.4.4), so compile, site facts, verify and install stay MTA-agnostic and adding a
mail server — or a packaging target that needs per-MTA facts — touches one file plus this table.

Every module provides the same functions (the ``Integration`` protocol below); ``integration(kind)``
imports only the one asked for, so a command pays for the MTA it works on and no other.
Detection (what is installed, which one is active) stays in ``kavsetup.detect``: it reads a tree
and writes nothing, and these modules build on what it found.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, cast

from kavsetup.detect.model import MTAKind

if TYPE_CHECKING:
    from kavsetup.detect.model import MTAInfo, System
    from kavsetup.integrate.edits import Edit
    from kavsetup.integrate.files import Root
    from kavsetup.integrate.settings import IntegrationSettings

class CompileError(Exception):
    """The system cannot be integrated as asked; the message is one line for the admin."""


#: The registry: which module integrates which kind of MTA.
MODULES: dict[MTAKind, str] = {
    MTAKind.POSTFIX: "kavsetup.mta.postfix",
    MTAKind.SENDMAIL: "kavsetup.mta.sendmail",
    MTAKind.EXIM: "kavsetup.mta.exim",
    MTAKind.QMAIL: "kavsetup.mta.qmail",
}


class Integration(Protocol):
    """What each ``kavsetup/mta/<name>.py`` module provides."""

    def from_config(self, root: Root, config: str, detected: MTAInfo | None) -> MTAInfo:
        """The MTA as ``--mta-config`` names it: ``detected`` with that configuration file, or,
        when detection did not find the MTA, built from the file alone (version unknown)."""
        ...

    def site_facts(self, root: Root, mta: MTAInfo) -> dict[str, Any]:
        """Facts of this site that ``plan`` needs beyond ``System`` (fields of
        IntegrationSettings: ``taken_ports``, ``postmasters``, ``filter_overrides``)."""
        ...

    def plan(self, system: System, mta: MTAInfo, s: IntegrationSettings) -> tuple[list[Edit], list[str]]:
        """The edits that integrate this MTA, and notes for the administrator; pure."""
        ...

    def verify(self, root: Root, mta: MTAInfo, s: IntegrationSettings) -> tuple[bool, str]:
        """Run the MTA's own checker on what ``plan`` wrote: (ok, message)."""
        ...

    def after_change(self, root: Root, phase: str) -> list[str]:
        """After ``install`` or ``uninstall`` (``phase``): reload the MTA if it is running and, after
        uninstall, requeue the mail it held for our transport, so nothing waits for a person; when
        it is not running, notes saying exactly what to run (issue 11). Notes for the admin."""
        ...


def integration(kind: MTAKind | str) -> Integration:
    """The module that integrates ``kind`` (imported on first use)."""
    return cast("Integration", importlib.import_module(MODULES[MTAKind(kind)]))
