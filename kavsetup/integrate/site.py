"""Gather the site facts: which MTA to integrate, and what compile needs beyond ``System``.

Detection (kavsetup.detect) is the normal source.  ``--mta X --mta-config PATH`` covers what it
cannot see (a hand-built root holding only configuration, guide 3.4: "the installer will issue
requests for information ... e.g. the path to the mail server's configuration file"): then the
MTA's module (kavsetup/mta/<name>.py ``from_config``) builds it from the configuration file.
Facts only a given MTA has (Postfix's master.cf ports, qmail's .qmail-postmaster) come from its
module's ``site_facts``; what every site has (ports in use on a live system, nologin) is here.
"""

from __future__ import annotations

import socket

from kavsetup.conffile import render_config
from kavsetup.detect.model import MTAInfo, MTAKind, System
from kavsetup.detect.osinfo import layout_of
from kavsetup.detect.rootfs import RootFS
from kavsetup.integrate.files import Root
from kavsetup.integrate.settings import IntegrationSettings
from kavsetup.mta import CompileError, integration


def choose_mta(system: System, root: Root, kind: str, mta_config: str) -> MTAInfo:
    if kind == "auto":
        if system.active is None:
            if mta_config:
                raise CompileError("--mta-config needs --mta (postfix, sendmail, exim or qmail)")
            found = ", ".join(m.kind.value for m in system.mtas) or "none"
            why = "; ".join(str(p) for p in system.problems if "sendmail" in p.path or "MTA" in p.message)
            raise CompileError(f"no active mail server found in {root.path} (installed: {found}"
                               f"{'; ' + why if why else ''}); use --mta and --mta-config")
        mta = system.active
    else:
        mta = system.mta(kind)
        if mta is None and not mta_config:
            raise CompileError(f"{kind} was not found in {root.path}; give its configuration with --mta-config")
    if not mta_config:
        return mta
    if root.read(mta_config).kind == "absent":
        raise CompileError(f"{mta_config}: no such file in {root.path}")
    return integration(mta.kind if mta else MTAKind(kind)).from_config(root, mta_config, mta)


def taken_ports(root: Root, mta: MTAInfo, s: IntegrationSettings) -> tuple[int, ...]:
    """Ports the filter must not use: those the MTA's own configuration holds, and on a live
    system (root /) every port someone already listens on at the loopback."""
    held = integration(mta.kind).site_facts(root, mta).get("taken_ports", ())
    return tuple(sorted(set(held) | _listening(root, s)))


def _listening(root: Root, s: IntegrationSettings) -> set[int]:
    taken: set[int] = set()
    if root.is_live:
        for port in range(s.filter_port, s.filter_port + 50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((s.filter_host, port))
                except OSError:
                    taken.add(port)
    return taken


def site_settings(root: Root, mta: MTAInfo, s: IntegrationSettings) -> IntegrationSettings:
    facts = dict(integration(mta.kind).site_facts(root, mta))
    facts["taken_ports"] = tuple(sorted(set(facts.get("taken_ports", ())) | _listening(root, s)))
    nologin = "/usr/sbin/nologin" if root.read("/usr/sbin/nologin").exists else "/bin/false"
    layout = layout_of(RootFS(root.path))  # /usr/local/etc/kav on FreeBSD (runtime/layout.py)
    s = s.with_(layout=layout.name, conf_file=layout.conf_file)
    return s.with_(**facts, nologin=nologin, conf_default_text=s.conf_default_text or default_conf_text(root, s))


def default_conf_text(root: Root, s: IntegrationSettings) -> str:
    """The kav4mailservers.conf written when none exists: the schema's defaults, or, when the
    setup answered ``import_from``, the earlier installation's settings converted (guide 3.2;
    kavsetup/importer.py, as ``kavsetup config import``)."""
    if not s.import_from:
        return render_config(None, origin="kavsetup install", layout=s.os_layout)
    from kavsetup import importer

    host = root.host(s.import_from)
    if not host.is_file():
        raise CompileError(f"import_from: {s.import_from}: no such file in {root.path}")
    result = importer.import_4x(host) if host.suffix.lower() == ".ini" else importer.import_50(host)
    return render_config(result.settings, origin=f"imported from {result.version} {s.import_from}",
                         layout=s.os_layout)
