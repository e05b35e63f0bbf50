"""Verify what the plan wrote before the transaction commits (design: compile -> apply -> verify).

Our own kav4mailservers.conf is checked first with the runtime's loader, so the file the filter
will read is known good before the MTA is pointed at it; then the MTA's module runs the MTA's own
checker (kavsetup/mta/<name>.py ``verify``).  A failure makes the transaction roll back.
"""

from __future__ import annotations

from kavsetup.detect.model import MTAInfo
from kavsetup.integrate.files import Root
from kavsetup.integrate.settings import IntegrationSettings
from kavsetup.mta import integration
from runtime.config import ConfigError, load_config


def verify(root: Root, mta: MTAInfo, settings: IntegrationSettings) -> tuple[bool, str]:
    """(ok, message)."""
    ok, why = check_conf(root, settings.conf_file)
    if not ok:
        return ok, why
    return integration(mta.kind).verify(root, mta, settings)


def check_conf(root: Root, conf: str) -> tuple[bool, str]:
    try:
        load_config(root.host(conf))
    except ConfigError as exc:
        return False, f"{conf}: {str(exc).splitlines()[0]}"
    return True, ""
