"""Postfix integration (guide 4.4.3, 6.6), done the way Postfix's FILTER_README and the amavis
recipes do it today.

    main.cf    content_filter = kavscan:[127.0.0.1]:10025
    master.cf  kavscan  unix ... lmtp|smtp   (dedicated transport: concurrency, timeouts,
                                             XFORWARD for SMTP, TLS off on loopback)
               127.0.0.1:10025 inet n n n - 10 spawn user=kluser argv=.../smtpscanner
                                             (guide's spawn form; omitted in daemon form, where
                                              smtpscanner listens on 127.0.0.1:10025 itself)
               127.0.0.1:10026 inet n - n - 10 smtpd -o content_filter= -o receive_override_options=...
                                             (reinjection, FILTER_README's overrides)
    accounts   kluser in group filter, home /var/spool/filter (kluser:filter 0750)
    kav conf   Protocol, ForwardMailer=smtp:127.0.0.1:10026, ListenAddress (daemon form)

Differences from the 2007 guide, all documented in docs/integration.md: ``[127.0.0.1]`` instead
of ``localhost`` (no DNS/hosts lookup — the guide's FAQ about "localhost: host not found"
disappears), a named transport instead of the bare ``lmtp:`` so ``maxproc`` bounds concurrency,
and the reinjection smtpd gets the full override set so mail is not checked twice.
"""

from __future__ import annotations

from kavsetup.detect.model import MTAInfo, System, Version
from kavsetup.integrate.edits import Edit, EnsureDir, MasterServices, SetParams
from kavsetup.integrate.settings import Settings
from kavsetup.mta_patches import common
from kavsetup.mta_patches.common import CompileError

TRANSPORT = "kavscan"


def _at_least(v: Version | None, *parts: int) -> bool:
    return v is None or v.parts[: len(parts)] >= parts


def choose_ports(s: Settings) -> tuple[int, int]:
    """Filter and reinjection ports, moved up together past any taken port."""
    taken = set(s.taken_ports)
    f = s.filter_port
    while f in taken:
        f += 1
    r = s.reinject_port if s.reinject_port != f else f + 1
    while r in taken or r == f:
        r += 1
    return f, r


def is_ours(value: str) -> bool:
    return value.startswith(f"{TRANSPORT}:")


def reinject_options(v: Version | None, chained: str) -> list[str]:
    opts = [f"-o content_filter={chained}"]
    ro = "no_unknown_recipient_checks,no_header_body_checks"
    if _at_least(v, 2, 3):
        ro += ",no_milters"
    opts.append(f"-o receive_override_options={ro}")
    opts += ["-o smtpd_helo_restrictions=", "-o smtpd_client_restrictions=",
             "-o smtpd_sender_restrictions="]
    if _at_least(v, 2, 10):
        opts.append("-o smtpd_relay_restrictions=")
    opts += ["-o smtpd_recipient_restrictions=permit_mynetworks,reject",
             "-o smtpd_data_restrictions=",
             "-o mynetworks=127.0.0.0/8",
             "-o smtpd_authorized_xforward_hosts=127.0.0.0/8",
             "-o strict_rfc821_envelopes=yes",
             "-o smtpd_error_sleep_time=0",
             "-o smtpd_soft_error_limit=1001",
             "-o smtpd_hard_error_limit=1000"]
    if _at_least(v, 2, 2):
        opts += ["-o smtpd_client_connection_count_limit=0", "-o smtpd_client_connection_rate_limit=0"]
    if _at_least(v, 2, 3):
        opts += ["-o smtpd_tls_security_level=none", "-o smtpd_milters="]
    opts.append("-o smtpd_sasl_auth_enable=no")
    return opts


def _entry(head: list[str], options: list[str]) -> str:
    line = f"{head[0]} {head[1]}  " + "  ".join(head[2:7]) + "  " + " ".join(head[7:])
    return "\n".join([line, *(f"  {o}" for o in options)]) + "\n"


def plan(system: System, mta: MTAInfo, s: Settings) -> tuple[list[Edit], list[str]]:
    info = mta.postfix
    if not info.main_cf_exists or not info.master_cf_exists:
        raise CompileError(f"postfix: {info.main_cf} or {info.master_cf} not found; "
                           "give the configuration with --mta-config")
    notes: list[str] = []
    current = info.content_filter.strip()
    chained = ""
    if current and not is_ours(current):
        if not s.chain:
            raise CompileError(
                f"postfix: {info.main_cf} already sets content_filter = {current} (another filter such as "
                "amavis or clamsmtp); refusing to replace it. Use --chain to scan first and then hand "
                "mail to it, or remove it first")
        chained = current
        notes.append(f"postfix: chaining: mail scanned by kav4mailservers is reinjected with "
                     f"content_filter = {current}")
    for svc in s.filter_overrides:
        notes.append(f"postfix: master.cf service {svc} sets its own content_filter: mail it receives "
                     "is NOT scanned by kav4mailservers (remove that -o to scan it)")
    fport, rport = choose_ports(s)
    if (fport, rport) != (s.filter_port, s.reinject_port):
        notes.append(f"postfix: ports {s.filter_port}/{s.reinject_port} are taken; using {fport}/{rport}")
    host = s.filter_host
    v = mta.version
    edits: list[Edit] = []
    acct, uid, gid = common.accounts(system, s, s.spool)
    edits += acct
    edits += common.parent_dirs(s.spool)
    edits.append(EnsureDir(s.spool, 0o750, uid, gid))
    proto = s.protocol
    t_opts = [f"-o {proto}_data_done_timeout=1200s"]
    if _at_least(v, 2, 3):
        t_opts.append(f"-o {proto}_tls_security_level=none")
    if proto == "smtp":
        t_opts.append("-o smtp_send_xforward_command=yes")
    services: list[tuple[str, str]] = [
        (f"{TRANSPORT}/unix", _entry([TRANSPORT, "unix", "-", "-", "n", "-", str(s.maxproc), proto], t_opts)),
    ]
    if s.postfix_mode == "spawn":
        services.append((f"{host}:{fport}/inet", _entry(
            [f"{host}:{fport}", "inet", "n", "n", "n", "-", str(s.maxproc), "spawn"],
            [f"user={s.user} argv={s.prefix}/bin/smtpscanner --stdio"])))
        listen = "stdio"
    else:
        listen = f"inet:{host}:{fport}"
        notes.append(f"postfix: daemon form: smtpscanner must run as a service listening on {host}:{fport} "
                     "(ListenAddress in kav4mailservers.conf)")
    services.append((f"{host}:{rport}/inet", _entry(
        [f"{host}:{rport}", "inet", "n", "-", "n", "-", str(s.maxproc), "smtpd"], reinject_options(v, chained))))
    # Our configuration first, the MTA's last: content_filter is only switched on once the
    # transport and the reinjection service it relies on exist.
    sx = s.with_(xforward=(proto == "smtp"))
    edits += common.conf_edits(sx, f"smtp:{host}:{rport}", listen, gid)
    edits.append(MasterServices(str(info.master_cf), tuple(services)))
    edits.append(SetParams(str(info.main_cf), (("content_filter", f"{TRANSPORT}:[{host}]:{fport}"),)))
    return edits, notes
