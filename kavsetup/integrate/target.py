"""Which MTA to integrate, and the site facts compile() needs beyond ``System``.

Detection (kavsetup.detect) is the normal source.  ``--mta X --mta-config PATH`` covers what it
cannot see (a hand-built root holding only configuration, guide 3.4: "the installer will issue
requests for information ... e.g. the path to the mail server's configuration file"): then the
MTAInfo is built here from the configuration file alone, with the version unknown.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import PurePosixPath

from kavsetup.detect.model import (
    EximInfo,
    MTAInfo,
    MTAKind,
    PostfixInfo,
    QmailInfo,
    SendmailInfo,
    System,
)
from kavsetup.detect.sendmail import dz_version
from kavsetup.integrate.files import Root
from kavsetup.integrate.settings import Settings
from kavsetup.mta_patches import common
from kavsetup.mta_patches import postfix_cf as pcf
from kavsetup.mta_patches.common import CompileError


def _text(root: Root, path: PurePosixPath | str) -> str:
    img = root.read(path)
    return img.text() if img.kind == "file" else ""


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
        mta = system.mta(kind) or _synthesize(root, MTAKind(kind), mta_config)
    if mta_config:
        mta = _override_config(root, mta, mta_config)
    return mta


def _postfix_info(root: Root, main_cf: PurePosixPath) -> PostfixInfo:
    d = main_cf.parent
    text = _text(root, main_cf)
    return PostfixInfo(None, d, None, None, None, main_cf, d / "master.cf",
                       root.read(main_cf).kind == "file", root.read(d / "master.cf").kind == "file",
                       pcf.get_param(text, "mail_owner") or "postfix",
                       pcf.get_param(text, "setgid_group") or "postdrop",
                       pcf.get_param(text, "content_filter") or "")


def _synthesize(root: Root, kind: MTAKind, cfg: str) -> MTAInfo:
    if not cfg:
        raise CompileError(f"{kind.value} was not found in {root.path}; give its configuration with --mta-config")
    p = PurePosixPath(cfg)
    if root.read(p).kind == "absent":
        raise CompileError(f"{cfg}: no such file in {root.path}")
    details: object
    version = None
    if kind is MTAKind.POSTFIX:
        details = _postfix_info(root, p)
    elif kind is MTAKind.SENDMAIL:
        version = dz_version(_text(root, p))
        submit = p.parent / "submit.cf"
        details = SendmailInfo(version, p, True, submit if root.read(submit).exists else None,
                               None, None, p.parent)
    elif kind is MTAKind.EXIM:
        details = EximInfo(PurePosixPath("/usr/sbin/exim"), None, p, None, None)
    else:
        home = p if root.read(p).kind == "dir" else p.parent.parent
        details = _qmail_info(root, home)
    return MTAInfo(kind, True, True, version, "--mta-config" if version else "", None, p, None, details)  # type: ignore[arg-type]


def _qmail_info(root: Root, home: PurePosixPath) -> QmailInfo:
    q = home / "bin" / "qmail-queue"
    img = root.read(q)
    aside = home / "bin" / "queue.kav55"
    wrapped = root.read(aside).exists or b"kav4mailservers" in img.data
    alias = home / "alias" / ".qmail-postmaster"
    targets = common.read_qmail_postmaster(_text(root, alias).splitlines())
    return QmailInfo(home, q, img.exists, wrapped, aside if root.read(aside).exists else None,
                     home / "control", (), alias if root.read(alias).exists else None, targets)


def _override_config(root: Root, mta: MTAInfo, cfg: str) -> MTAInfo:
    p = PurePosixPath(cfg)
    if root.read(p).kind == "absent":
        raise CompileError(f"{cfg}: no such file in {root.path}")
    if mta.kind is MTAKind.POSTFIX:
        info = _postfix_info(root, p)
        info = dataclasses.replace(info, daemon_directory=mta.postfix.daemon_directory,
                                   command_directory=mta.postfix.command_directory)
        return dataclasses.replace(mta, config_file=p, details=info)
    if mta.kind is MTAKind.SENDMAIL:
        return dataclasses.replace(mta, config_file=p, details=dataclasses.replace(mta.sendmail, sendmail_cf=p,
                                                                                  sendmail_cf_exists=True))
    if mta.kind is MTAKind.EXIM:
        return dataclasses.replace(mta, config_file=p, details=dataclasses.replace(mta.exim, config_file=p))
    home = p if root.read(p).kind == "dir" else p.parent.parent
    return dataclasses.replace(mta, details=_qmail_info(root, home))


def taken_ports(root: Root, mta: MTAInfo, s: Settings) -> tuple[int, ...]:
    """Ports the filter must not use: master.cf inet services, and on a live system (root /)
    every port someone already listens on at the loopback."""
    taken: set[int] = set()
    if mta.kind is MTAKind.POSTFIX:
        taken |= pcf.inet_ports(_text(root, mta.postfix.master_cf))
    if root.is_live:
        for port in range(s.filter_port, s.filter_port + 50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((s.filter_host, port))
                except OSError:
                    taken.add(port)
    return tuple(sorted(taken))


def postmasters(root: Root, mta: MTAInfo) -> tuple[str, ...]:
    """Guide 6.1.1: the administrators behind ``postmaster`` (qmail's .qmail-postmaster, or
    the aliases file every other MTA reads)."""
    if mta.kind is MTAKind.QMAIL:
        if mta.qmail.postmaster_targets:
            return mta.qmail.postmaster_targets
        return common.read_qmail_postmaster(_text(root, mta.qmail.home / "alias" / ".qmail-postmaster").splitlines())
    return common.read_postmasters(_text(root, "/etc/aliases").splitlines())


def filter_overrides(root: Root, mta: MTAInfo) -> tuple[str, ...]:
    """Postfix services that set their own ``-o content_filter=...`` (non-empty): mail they
    receive never sees main.cf's content_filter, i.e. would not be scanned."""
    if mta.kind is not MTAKind.POSTFIX:
        return ()
    out = []
    for e in pcf.services(_text(root, mta.postfix.master_cf)):
        for f in e.fields[8:]:
            if f.startswith("content_filter=") and f != "content_filter=":
                out.append(f"{e.service_key} ({f})")
    return tuple(out)


def site_settings(root: Root, mta: MTAInfo, s: Settings) -> Settings:
    nologin = "/usr/sbin/nologin" if root.read("/usr/sbin/nologin").exists else "/bin/false"
    return s.with_(taken_ports=taken_ports(root, mta, s), postmasters=postmasters(root, mta),
                   filter_overrides=filter_overrides(root, mta),
                   nologin=nologin, conf_default_text=s.conf_default_text or default_conf_text())


def default_conf_text() -> str:
    """The schema's commented default kav4mailservers.conf, when the foundation provides it."""
    try:
        from kavsetup.conffile import render_config
    except ImportError:
        return ""
    return render_config(None, origin="kavsetup install")
