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

The before-queue (proxy) form, Postfix's SMTPD_PROXY_README, is the third ``postfix_mode``:

    master.cf  every smtpd service that takes mail in (``smtp inet``, ``submission``, postscreen's
               ``smtpd pass``, ...) gets -o smtpd_proxy_filter=127.0.0.1:10025
               -o smtpd_proxy_options=speed_adjust -o smtpd_proxy_timeout=300s: smtpd receives the
               whole message, then hands it to the standing smtpscanner, whose answer to the final
               dot is the reinjection smtpd's (10026) answer, passed back to the client;
               ``pickup`` (sendmail(1), which never meets smtpd) gets -o content_filter=kavscan:...,
               the after-queue path through the same daemon;
    main.cf    untouched (no content_filter: mail is scanned once, before the queue).

Differences from the 2007 guide, all documented in docs/integration.md: ``[127.0.0.1]`` instead
of ``localhost`` (no DNS/hosts lookup — the guide's FAQ about "localhost: host not found"
disappears), a named transport instead of the bare ``lmtp:`` so ``maxproc`` bounds concurrency,
and the reinjection smtpd gets the full override set so mail is not checked twice.
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath
from typing import Any

from kavsetup import postfix_cf
from kavsetup.detect.model import MTAInfo, PostfixInfo, System, Version
from kavsetup.integrate.edits import Edit, EnsureDir, MasterServices, SetParams
from kavsetup.integrate.files import Root
from kavsetup.integrate.settings import IntegrationSettings
from kavsetup.mta import CompileError, checker, common
from kavsetup.mta.common import choose_ports

TRANSPORT = "kavscan"
#: SMTPD_PROXY_README's smtpd_proxy_timeout: how long Postfix's smtpd waits for the filter's
#: answer to the final dot. Below the 10 minutes RFC 5321 (4.5.3.2.6) gives clients for that
#: answer, so the client hears Postfix's 451 and retries instead of dropping the connection; above
#: the time a large message takes to scan and forward.
PROXY_TIMEOUT = "300s"


#: What the setup dialogue (kavsetup/conversation.py) asks for this MTA: its usual main file,
#: patterns a file must (and must not) show to be that file, the answers that are a real choice
#: here, and the port answers it uses.
SETUP = {"config": "/etc/postfix/main.cf", "config_is": r"^[a-z][a-z0-9_]*[ \t]*=",
         "config_not": r"^[ \t]*begin[ \t]+(routers|transports|acl)\b|^V[0-9]+/",
         "choices": ("postfix_mode", "protocol"), "ports": ("filter_port", "reinject_port")}

def _at_least(v: Version | None, *parts: int) -> bool:
    return v is None or v.parts[: len(parts)] >= parts


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


def plan(system: System, mta: MTAInfo, s: IntegrationSettings) -> tuple[list[Edit], list[str]]:
    info = mta.postfix
    if not info.main_cf_exists or not info.master_cf_exists:
        raise CompileError(f"postfix: {info.main_cf} or {info.master_cf} not found; "
                           "give the configuration with --mta-config")
    notes: list[str] = []
    current = info.content_filter.strip()
    chained = ""
    proxy = s.postfix_mode == "proxy"
    if proxy:
        # main.cf is not touched: whatever content_filter the site has stays in force for mail
        # leaving our reinjection smtpd (scanned first, then handed to it), as it was before.
        chained = "" if is_ours(current) else current
        if chained:
            notes.append(f"postfix: mail scanned by kav4mailservers is reinjected with content_filter = {current}")
    elif current and not is_ours(current):
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
    proto = "smtp" if proxy else s.protocol
    if proxy and s.protocol != "smtp":
        notes.append("postfix: proxy form: smtpscanner speaks SMTP (smtpd_proxy_filter knows no LMTP)")
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
        notes.append(f"postfix: {s.postfix_mode} form: smtpscanner must run as a service listening on "
                     f"{host}:{fport} (ListenAddress in kav4mailservers.conf)")
    # After the queue the kavscan transport's maxproc bounds the sessions smtpscanner forwards; before
    # it every smtpd process may be in one, so the reinjection smtpd takes as many as the public one
    # (default_process_limit, SMTPD_PROXY_README's recipe) -- fewer and the surplus waits for a
    # greeting while smtpscanner's pooled idle connections hold every process.
    rmax = "-" if proxy else str(s.maxproc)
    services.append((f"{host}:{rport}/inet", _entry(
        [f"{host}:{rport}", "inet", "n", "-", "n", "-", rmax, "smtpd"], reinject_options(v, chained))))
    if proxy:
        wrapped, why = proxy_services(s.receivers, f"{host}:{fport}", f"{TRANSPORT}:[{host}]:{fport}", v)
        if not any(key.endswith("/inet") or key.endswith("/pass") for key, _ in wrapped):
            raise CompileError(f"postfix: {info.master_cf} has no smtpd service to put the before-queue "
                               "filter in front of; use postfix_mode daemon")
        services += wrapped
        notes += why
    # Our configuration first, the MTA's last: content_filter is only switched on once the
    # transport and the reinjection service it relies on exist.
    sx = s.with_(protocol=proto, xforward=(proto == "smtp"))
    edits += common.conf_edits(sx, f"smtp:{host}:{rport}", listen, gid, before_queue=proxy)
    edits.append(MasterServices(str(info.master_cf), tuple(services)))
    if not proxy:
        edits.append(SetParams(str(info.main_cf), (("content_filter", f"{TRANSPORT}:[{host}]:{fport}"),)))
    return edits, notes


def _option(e: postfix_cf.Entry, name: str) -> str | None:
    """The value a service's own ``-o name=value`` gives (the last one wins), None without one."""
    found = None
    for f in e.fields[8:]:
        if f.startswith(f"{name}="):
            found = f.split("=", 1)[1]
    return found


def _address(nexthop: str) -> str:
    """``host:port`` of a content_filter nexthop (``[127.0.0.1]:10025``) or an smtpd_proxy_filter
    value (``127.0.0.1:10025``, ``inet:127.0.0.1:10025``), "" for anything else."""
    host, _, port = nexthop.removeprefix("inet:").rpartition(":")
    return f"{host.strip('[]')}:{port}" if host and port.isdigit() else ""


def receivers(master_text: str) -> tuple[tuple[str, str], ...]:
    """master.cf services that take mail into Postfix -- smtpd on ``inet`` (smtp, submission,
    smtps) or ``pass`` (behind postscreen), and ``pickup`` -- with their text, byte for byte."""
    out = []
    for e in postfix_cf.services(master_text):
        f = e.fields
        if (f[1] in ("inet", "pass") and f[7] == "smtpd") or f[7] == "pickup":
            out.append((e.service_key, postfix_cf.span_text(master_text, e)))
    return tuple(out)


def proxy_services(found: tuple[tuple[str, str], ...], filter_at: str, transport: str,
                   v: Version | None) -> tuple[list[tuple[str, str]], list[str]]:
    """The proxy form's edits of the receiving services: their own text with our ``-o`` lines
    after it (so uninstall restores each span exactly), and a note for every one left alone.

    Left alone: a service with its own ``-o content_filter=...`` (empty: another after-queue
    filter's reinjection listener; set: mail the admin sends elsewhere, reported like
    ``filter_overrides``) or its own ``smtpd_proxy_filter`` (another before-queue filter, or
    explicitly none)."""
    out: list[tuple[str, str]] = []
    notes: list[str] = []
    for key, text in found:
        e = postfix_cf.entries(text)[0]
        pickup = e.fields[7] == "pickup"
        own_cf, own_proxy = _option(e, "content_filter"), _option(e, "smtpd_proxy_filter")
        if own_proxy is not None or (own_cf is not None and not is_ours(own_cf)):
            # a set content_filter is already reported (filter_overrides); say what else stays unscanned
            if own_proxy:
                notes.append(f"postfix: master.cf service {key} has its own smtpd_proxy_filter={own_proxy}: "
                             "mail it receives is NOT scanned by kav4mailservers")
            elif pickup and not own_cf:
                notes.append(f"postfix: master.cf service {key} sets an empty content_filter: local "
                             "submissions are NOT scanned by kav4mailservers")
            continue
        if pickup:
            opts = [f"-o content_filter={transport}"]
        else:
            opts = [f"-o smtpd_proxy_filter={filter_at}", f"-o smtpd_proxy_timeout={PROXY_TIMEOUT}"]
            if _at_least(v, 2, 7):
                opts.append("-o smtpd_proxy_options=speed_adjust")
        lines = [ln.rstrip("\r\n") for ln in postfix_cf.split_lines(text)]
        indent = next((ln[: len(ln) - len(ln.lstrip())] for ln in lines[1:] if ln.strip()[:1] == "-"), "  ")
        out.append((key, "\n".join([*lines, *(indent + o for o in opts)]) + "\n"))
    return out, notes


# -- site facts ----------------------------------------------------------------------------------

def _info(root: Root, main_cf: PurePosixPath) -> PostfixInfo:
    """PostfixInfo from main.cf alone (``--mta-config`` on a root detection could not read)."""
    d = main_cf.parent
    text = root.text(main_cf)
    return PostfixInfo(None, d, None, None, None, main_cf, d / "master.cf",
                       root.read(main_cf).kind == "file", root.read(d / "master.cf").kind == "file",
                       postfix_cf.get_param(text, "mail_owner") or "postfix",
                       postfix_cf.get_param(text, "setgid_group") or "postdrop",
                       postfix_cf.get_param(text, "content_filter") or "")


def from_config(root: Root, config: str, detected: MTAInfo | None) -> MTAInfo:
    p = PurePosixPath(config)
    info = _info(root, p)
    if detected is None:
        return MTAInfo.configured(info, p)
    info = dataclasses.replace(info, daemon_directory=detected.postfix.daemon_directory,
                               command_directory=detected.postfix.command_directory)
    return dataclasses.replace(detected, config_file=p, details=info)


def filter_overrides(master_text: str) -> tuple[str, ...]:
    """Services whose own ``-o content_filter=...`` (the last one: Postfix applies them in order)
    is another filter: mail they receive never sees main.cf's content_filter, i.e. would not be
    scanned.  An empty one is the reinjection idiom, not reported."""
    out = []
    for e in postfix_cf.services(master_text):
        own = _option(e, "content_filter")
        if own and not is_ours(own):
            out.append(f"{e.service_key} (content_filter={own})")
    return tuple(out)


def site_facts(root: Root, mta: MTAInfo) -> dict[str, Any]:
    master = root.text(mta.postfix.master_cf)
    return {"taken_ports": tuple(sorted(postfix_cf.inet_ports(master))),
            "postmasters": common.read_postmasters(root.text("/etc/aliases").splitlines()),
            "filter_overrides": filter_overrides(master), "receivers": receivers(master)}


def verify(root: Root, mta: MTAInfo, s: IntegrationSettings) -> tuple[bool, str]:
    """``postconf -M`` (master.cf parses) and ``postfix check`` on the configuration directory."""
    cfg = str(mta.postfix.config_directory)
    argv, why = checker.runner(root, "/usr/sbin/postfix")
    if argv is None:
        return True, f"verification skipped: {why}"
    pc, _ = checker.runner(root, "/usr/sbin/postconf")
    if pc is not None:
        code, out = checker.run([*pc, "-c", cfg, "-M"])
        if code != 0 or "fatal" in out:
            return False, f"postconf -M: {checker.last_line(out, code)}"
    code, out = checker.run([*argv, "-c", cfg, "check"])
    if code != 0:
        return False, f"postfix check: {checker.last_line(out, code)}"
    return True, "postfix check passed"


# -- the running Postfix after install/uninstall (issue 11 item 7) -----------------------------------
def _postfix_running(root: Root) -> bool:
    import subprocess

    if not root.is_live:
        return False
    try:
        return subprocess.run(["postfix", "status"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def held_for_us(queues: tuple[str, ...] = ("deferred", "hold", "active", "incoming")) -> list[str]:
    """Queue ids of messages whose recorded content filter is our transport.

    Postfix records content_filter in the queue file when cleanup accepts the message, so mail
    deferred while the filter was down keeps asking for ``kavscan:`` after uninstall ("mail
    transport unavailable") until it is requeued; mail for anything else is left alone."""
    import json
    import subprocess

    ids: list[str] = []
    out = subprocess.run(["postqueue", "-j"], capture_output=True, text=True, timeout=120, check=False)
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("queue_name") not in queues:
            continue
        qid = str(msg.get("queue_id", ""))
        if not qid.isalnum():
            continue
        env = subprocess.run(["postcat", "-e", "-q", qid], capture_output=True, text=True, timeout=60, check=False)
        if any(ln.startswith("content_filter: ") and is_ours(ln.split(": ", 1)[1].strip())
               for ln in env.stdout.splitlines()):
            ids.append(qid)
    return ids


def after_change(root: Root, phase: str) -> list[str]:
    """Reload a running Postfix after ``install``/``uninstall``; after uninstall also requeue the
    mail held for our transport so it is delivered with no one running anything. Notes."""
    manual = [["postfix", "reload"]]
    if phase == "uninstall":
        manual.append(["postsuper", "-r", "ALL", "deferred"])
    if not _postfix_running(root):
        return common.not_running("postfix", manual)
    notes = common.run_commands([["postfix", "reload"]], "postfix")
    if phase == "uninstall":
        ids = held_for_us()
        if ids:
            # -r: back through cleanup, which no longer adds our content_filter; then a queue run
            notes += common.run_commands([["postsuper", "-r", qid] for qid in ids] + [["postqueue", "-f"]], "postfix")
            notes.append(f"postfix: requeued {len(ids)} message(s) held for the {TRANSPORT} transport")
    return notes
# -- kavsetup doctor (kavsetup/doctor.py): what only Postfix can tell ----------------------------
def _running(root: Root, mta: MTAInfo) -> tuple[bool, str]:
    """Postfix's master process, from its pid file (``$queue_directory/pid/master.pid``) and /proc."""
    qdir = mta.postfix.queue_directory or PurePosixPath("/var/spool/postfix")
    pidfile = qdir / "pid" / "master.pid"
    try:
        pid = int(root.host(pidfile).read_text().split()[0])
        with open(f"/proc/{pid}/comm") as fh:
            comm = fh.read().strip()
    except (OSError, ValueError, IndexError):
        return False, f"no master process ({pidfile} missing or stale)"
    if comm != "master":
        return False, f"{pidfile} names pid {pid}, which is {comm!r}, not Postfix's master"
    return True, f"master runs as pid {pid}"


def doctor_links(root: Root, mta: MTAInfo, static: bool) -> dict[str, tuple[bool | None, str, str]]:
    """``mta``: master running; ``content_filter``: main.cf hands mail to our transport and
    master.cf defines it; ``transport_address``: where that transport connects (detail), and the
    fix when nothing answers there."""
    info = mta.postfix
    links: dict[str, tuple[bool | None, str, str]] = {}
    if static:
        links["mta"] = (None, "not probed (--static)", "")
    else:
        ok, detail = _running(root, mta)
        links["mta"] = (ok, ("" if ok else "MTA not running: ") + detail, "" if ok else "systemctl start postfix")
    current = info.content_filter.strip()
    master = root.text(info.master_cf)
    fix = f"kavsetup install (or: postconf -e 'content_filter = {TRANSPORT}:[127.0.0.1]:10025' && postfix reload)"
    # The proxy form: main.cf is untouched, smtpd services hand mail to the address our pickup's
    # content_filter names (another before-queue filter elsewhere is not ours).
    ours = {_address(str(_option(e, "content_filter")).split(":", 1)[1]) for e in postfix_cf.services(master)
            if e.fields[7] == "pickup" and is_ours(str(_option(e, "content_filter")))}
    proxied = [e.service_key for e in postfix_cf.services(master)
               if e.fields[7] == "smtpd" and _address(_option(e, "smtpd_proxy_filter") or "") in ours]
    if not (current and is_ours(current)) and proxied:
        address = _address(str(_option(postfix_cf.find_service(master, proxied[0]), "smtpd_proxy_filter")))
        links["content_filter"] = (True, f"before-queue filter: smtpd_proxy_filter={address} on "
                                   f"{', '.join(proxied)}", "")
        links["transport_address"] = (None, address, "systemctl start kav4mailservers-smtpscanner (smtpscanner "
                                      "runs as a daemon in the proxy form)")
        return links
    if not current:
        links["content_filter"] = (False, f"content_filter missing: {info.main_cf} does not set content_filter, "
                                   "mail is delivered unscanned", fix)
    elif not is_ours(current):
        links["content_filter"] = (False, f"content_filter = {current} is not kav4mailservers' transport",
                                   "kavsetup install --chain (scan first, then hand mail to the other filter)")
    elif postfix_cf.find_service(master, f"{TRANSPORT}/unix") is None:
        links["content_filter"] = (False, f"content_filter = {current} but {info.master_cf} has no "
                                   f"'{TRANSPORT} unix' service", "kavsetup install")
    else:
        links["content_filter"] = (True, f"content_filter = {current}", "")
    if current and is_ours(current):
        address = _address(current.split(":", 1)[1])
        spawn = postfix_cf.find_service(master, f"{address}/inet")
        how = ("postfix reload (master.cf's spawn service for smtpscanner on " + address + ")" if spawn else
               f"kavsetup install ({info.master_cf} has no service on {address}), or systemctl start "
               "kav4mailservers-smtpscanner where smtpscanner runs as a daemon")
        links["transport_address"] = (None, address, how)
    return links


def queue_reason(root: Root, mta: MTAInfo, reply: str) -> tuple[str, str] | None:
    """Why the message the MTA accepted with ``reply`` (``... queued as ID``) is still queued:
    the ``delay_reason`` ``postqueue -j`` gives for it, and what to do next."""
    import json
    import re

    m = re.search(r"queued as ([0-9A-Za-z]+)", reply)
    argv, _ = checker.runner(root, "/usr/sbin/postqueue")
    if m is None or argv is None:
        return None
    code, out = checker.run([*argv, "-c", str(mta.postfix.config_directory), "-j"])
    for line in out.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("queue_id") != m.group(1):
            continue
        reasons = [r.get("delay_reason", "") for r in entry.get("recipients", []) if r.get("delay_reason")]
        where = entry.get("queue_name", "queue")
        reason = reasons[0] if reasons else f"waiting in the {where} queue (not tried yet)"
        return f"{m.group(1)} ({where}): {reason}", f"fix the cause, then: postqueue -i {m.group(1)}"
    return None
