#!/usr/bin/env python3
"""bench/soak: the fault soak — mixed mail through a real MTA while a chaos loop kills (issue 19 item 1).

``python -m bench.soak [--messages 10000] [--mta postfix|exim4-split|sendmail] [--clients 20] [--seed 1]``
(needs root, the distro matrix's cached Debian roots and the package: ``make deb``).

The cell is the distro matrix's own (tests/distro-matrix: Sandbox, Cell): a fresh overlay copy of
the ``bookworm-<mta>`` root in its own network, PID and mount namespaces; our .deb installed with
``dpkg -i`` (postinst runs ``kavsetup install`` with its defaults and starts aveserver through the
init script); the MTA and the product started as the matrix starts them. Then:

    20 SMTP clients -> MTA :25 -> smtpscanner (as kavsetup wired it) -> aveserver
                    -> reinjection -> MTA local delivery -> /var/mail/alice (and notices to kavadmin)

while :mod:`bench.soak.chaos` SIGKILLs aveserver workers, the aveserver master, smtpscanner, the
reinjection listener, and fills TempPath (a tmpfs mounted there in the sandbox) for a while.

At the end the chaos stops, the daemons are brought back the way their init scripts would, the
queue is flushed until empty, and :mod:`bench.soak.verify` checks every message (Message-ID +
body digest) and prints the table: kills per kind, outcomes, each duplicate with its cause.
Exit status 0 only when nothing was lost and nothing unexplained happened.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distro-matrix"))

from distro_matrix.roots import ensure_root  # noqa: E402
from distro_matrix.sandbox import Sandbox  # noqa: E402
from distro_matrix.scenarios import AVESERVER_UNIT, CONF, SMTPSCANNER_UNIT, Cell  # noqa: E402
from distro_matrix.spec import ADMIN_USER, FLAVOURS, MAIL_USER, RootSpec  # noqa: E402

from bench.soak import corpus, verify  # noqa: E402
from bench.soak.chaos import KINDS, Chaos, listener_children  # noqa: E402

MTAS = {"postfix": "postfix", "exim4-split": "exim4-split", "sendmail": "sendmail"}
#: Malformed variants the MTA rewrites by itself on local delivery (shown by sending the same
#: message through the same root without our package): Debian's Sendmail local mailer (F=9, MIME
#: 7->8 bit) turns a part-header line without a colon into an empty line.
MTA_REWRITES = {"sendmail": frozenset({"bad-header"})}
TMPFS_SIZE = "768m"  # TempPath's tmpfs: room for 20 sessions of 5 MB mail and their unpacked parts


def conf_value(sb: Sandbox, key: str, default: str = "") -> str:
    m = re.search(rf"^\s*{key}\s*=\s*(\S+)", sb.path(CONF).read_text(errors="replace"), re.M)
    return m.group(1) if m else default


@dataclass
class Result:
    table: str
    lost: int
    problems: list[str]
    seconds: float


def soak(messages: int, mta: str = "postfix", clients: int = 20, seed: int = 1, deb: Path | None = None,
         log=print, logs: Path | None = None) -> Result:  # noqa: ANN001
    deb = deb or max((REPO / "dist").glob("kav4mailservers_*_all.deb"), key=lambda p: p.stat().st_mtime, default=None)
    if deb is None:
        raise SystemExit("no package: run `make deb` first")
    spec = RootSpec("bookworm", FLAVOURS[MTAS[mta]])
    root, _ = ensure_root(spec)
    work = Path(tempfile.mkdtemp(prefix="soak."))
    zips = corpus.make_protected_zips(work)
    cell = Cell(spec, deb)
    t_start = time.monotonic()
    try:
        with Sandbox(root, "soak") as sb:
            cell.sb = sb
            try:
                return _run(cell, sb, work, zips, messages, mta, clients, seed, log, t_start, logs)
            finally:
                cell._stop_all()
                if os.environ.get("SOAK_DEBUG"):
                    print(sb.log_tail(60), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(cell: Cell, sb: Sandbox, work: Path, zips: list[bytes], messages: int, mta: str, clients: int,
         seed: int, log, t_start: float, logs: Path | None) -> Result:  # noqa: ANN001
    log(f"soak: installing {cell.deb.name} in bookworm-{mta}")
    log("soak: " + cell.install())
    bases = conf_value(sb, "BasesPath")
    sb.path(f"{bases}/soak.ndb").write_text(corpus.signature_file())  # the admin drops a signature file in
    temp = conf_value(sb, "TempPath", "/tmp")
    sb.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=1777", "tmpfs", temp]).check()
    cell._product_start(AVESERVER_UNIT, "restart")  # loads soak.ndb
    cell._start_product()
    cell._start_mta()
    scanner_daemon = cell._scanner_listens()
    fwd_port = _forward_port(sb)
    log(f"soak: TempPath {temp} (tmpfs {TMPFS_SIZE}), reinjection port {fwd_port}, "
        f"smtpscanner {'daemon' if scanner_daemon else 'spawned by the MTA'}")

    def reinjection(procs: list[tuple[psutil.Process, list[str]]]) -> list[psutil.Process]:
        if mta == "postfix":  # the master holds the listener too: pick the smtpd by its service name
            return [p for p, cmd in procs if cmd[:1] == ["smtpd"] and f"127.0.0.1:{fwd_port}" in cmd]
        return listener_children(procs, fwd_port, sb.init_pid)

    def restart(unit: str) -> None:
        """Start through the init script, again each second for 30 s if it fails (workers of a
        killed master may still hold the port): systemd's Restart=on-failure with RestartSec."""
        for attempt in range(30):
            try:
                cell._product_start(unit, "start")
                return
            except AssertionError as exc:
                if attempt == 29:
                    raise
                chaos.note("restart-failed", f"{unit}: {str(exc).splitlines()[0][:200]}")
                time.sleep(1)

    fill_file = f"{temp.rstrip('/')}/.soak-fill"
    chaos = Chaos(
        init_pid=sb.init_pid, reinjection=reinjection,
        restart_aveserver=lambda: restart(AVESERVER_UNIT),
        restart_smtpscanner=(lambda: restart(SMTPSCANNER_UNIT)) if scanner_daemon else None,
        fill=lambda: sb.sh(f"dd if=/dev/zero of={fill_file} bs=1M 2>/dev/null; true"),
        unfill=lambda: sb.run(["rm", "-f", fill_file]),
        seed=seed,
    )
    argv = ["nsenter", "-t", str(sb.init_pid), "-n", "--", sys.executable, "-m", "bench.soak.clients",
            "--seed", str(seed), "--messages", str(messages), "--clients", str(clients), "--protected", str(work)]
    t0 = time.monotonic()
    chaos.start()
    out = subprocess.run(argv, cwd=REPO, capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    sent_seconds = time.monotonic() - t0
    if out.returncode != 0:
        chaos.stop()
        raise SystemExit(f"clients failed: {out.stderr.decode(errors='replace')[-3000:]}")
    record = json.loads(out.stdout.decode().strip().splitlines()[-1])
    log(f"soak: {messages} messages handed to the MTA in {sent_seconds:.0f}s; chaos so far {dict(chaos.kills)}")
    _under_chaos(cell, sb.path(f"/var/mail/{MAIL_USER}"), messages, log)  # the MTA works the queue under fire
    chaos.stop()
    chaos_seconds = time.monotonic() - t0
    log(f"soak: chaos stopped after {chaos_seconds:.0f}s: {dict(chaos.kills)}")

    # -- recovery: what the init system and the MTA would do, then flush until the queue is empty
    chaos.unfill()
    restart(AVESERVER_UNIT)
    if scanner_daemon:
        restart(SMTPSCANNER_UNIT)
    drained = _drain(cell, sb, messages, log)
    total = time.monotonic() - t0

    sent = {}
    for seq in range(messages):
        sp, raw = corpus.build(seed, seq, zips)
        sent[seq] = (sp, corpus.body_digest(raw))
    syslog = "".join(p.read_text(errors="replace") for p in (sb.path("/var/log/matrix-syslog"),
                                                                 *sb.path("/var/log/exim4").glob("*mainlog"))
                     if p.exists())
    if logs is not None:  # for a post-mortem: the sandbox and its logs are gone after the run
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "mta.log").write_text(syslog)
        for f in sb.path("/var/log/kav/5.5/kav4mailservers").glob("*.log"):
            shutil.copyfile(f, logs / f.name)
        box = sb.path(f"/var/mail/{MAIL_USER}")
        if box.exists() and box.stat().st_size < 64 * 2**20:  # a small run's mailbox, to diff by hand
            shutil.copyfile(box, logs / "mbox")
        (logs / "chaos.log").write_text("".join(f"{time.strftime('%H:%M:%S', time.gmtime(e.at))} {e.kind} "
                                                f"{e.detail}\n" for e in chaos.events))
    explain = _explainer(mta, syslog, chaos)
    spools = [sb.path(d) for d in ("/var/spool/postfix", "/var/spool/exim4/input", "/var/spool/mqueue")]
    v = verify.check(sent, record["messages"], sb.path(f"/var/mail/{MAIL_USER}"),
                     sb.path(f"/var/mail/{ADMIN_USER}"), explain, verify.queued_ids(spools),
                     MTA_REWRITES.get(mta, frozenset()))
    if not drained:
        v.problems.append(f"the MTA's queue did not empty: {_queued(cell)} left")
    table = _table(mta, messages, clients, seed, chaos, v, _deferrals(syslog), sent_seconds, total)
    return Result(table, len(v.lost), v.problems, time.monotonic() - t_start)


def _forward_port(sb: Sandbox) -> int:
    fwd = conf_value(sb, "ForwardMailer", "smtp:127.0.0.1:10026")
    m = re.search(r":(\d+)$", fwd)
    return int(m.group(1)) if m else 10026


def _under_chaos(cell: Cell, box: Path, messages: int, log, share: float = 0.97) -> None:  # noqa: ANN001
    """Keep the chaos going while the MTA works the queue: until ``share`` of the messages are in
    the mailbox (or a time cap). Deferred mail is retried by a flush every 15 s (an admin's
    ``postqueue -f`` / ``exim -qff`` / ``sendmail -q``), not after the MTA's minutes of back-off."""
    cap = time.monotonic() + 300 + messages * 0.3
    needle = b"\nMessage-ID: <soak-"
    seen, pos, tail, flushed, shown = 0, 0, b"", time.monotonic(), 0.0
    while time.monotonic() < cap:
        if box.exists():
            with box.open("rb") as f:
                f.seek(pos)
                chunk = tail + f.read()
            pos += len(chunk) - len(tail)
            seen += chunk.count(needle)
            tail = chunk[-(len(needle) - 1):]  # shorter than the needle: never counted twice
        if seen >= messages * share:
            return
        if time.monotonic() - flushed > 15:
            _flush(cell)
            flushed = time.monotonic()
        if time.monotonic() - shown > 30:
            shown = time.monotonic()
            log(f"soak: under chaos, {seen} of {messages} in the mailbox")
        time.sleep(2)


def _flush(cell: Cell) -> None:
    """The MTA's flush, of both instances where kavsetup split it (Exim, Sendmail: the receiving
    one with ``-C``, the delivering one on the default configuration, whose queue holds scanned
    mail a local delivery deferred). Exim's ``-qff`` delivers in the foreground and may outlast
    the matrix's 60 s limit on a big queue: it goes on in the sandbox, the next flush follows."""
    try:
        cell._flush()
        if cell._listen_config():
            cell.control.flush(cell._sb())
    except subprocess.TimeoutExpired:
        pass


def _queued(cell: Cell) -> int:
    """Messages queued in the MTA, both instances where it is split."""
    return cell._queued() + (cell.control.queued(cell._sb()) if cell._listen_config() else 0)


def _drain(cell: Cell, sb: Sandbox, messages: int, log, timeout: float | None = None) -> bool:  # noqa: ANN001
    """Flush the queue until it is empty and the mailbox stops growing (a flush per 10 s, as an
    admin would after an outage; nothing else is touched)."""
    deadline = time.monotonic() + (timeout or max(300.0, messages * 0.2))
    box = sb.path(f"/var/mail/{MAIL_USER}")
    last_size, stable = -1, 0
    while time.monotonic() < deadline:
        queued = _queued(cell)
        size = box.stat().st_size if box.exists() else 0
        stable = stable + 1 if (queued == 0 and size == last_size) else 0
        if stable >= 3:
            return True
        last_size = size
        if queued:
            _flush(cell)
        log(f"soak: draining, {queued} queued, mailbox {size / 2**20:.1f} MiB")
        time.sleep(10 if queued else 2)
    return False


def _explainer(mta: str, syslog: str, chaos: Chaos):  # noqa: ANN202
    """For a message that arrived twice: the MTA's own words about the hand-over that broke, and
    the chaos events around it.

    The MTA logs the Message-ID of every queue file it creates: the first is the client's, the
    others are copies the filter reinjected. A second copy means the filter's reinjection had
    already taken the message when the MTA's hand-over to the filter failed (Postfix: ``lost
    connection ... while sending end of data -- message may be sent more than once``; Sendmail:
    ``read error from smtpscanner`` when the mailer it spawned was killed; or a 4xx from the
    filter after the forward): the MTA keeps the message and tries again. The deferral shown is
    the first one of the client's queue file logged at or after the first copy was queued.
    Exim's split instances log to two files whose order cannot be merged line by line: no
    explanation there (none has been needed: no Exim soak has produced a duplicate).
    """
    created, deferrals = _handovers(mta, syslog)
    events = [(time.strftime("%H:%M:%S", time.gmtime(e.at)), e.kind) for e in chaos.events]

    def explain(sp: corpus.Spec) -> str:
        ids = created.get(sp.message_id, [])
        if len(ids) < 3:
            return ""
        t_copy = ids[1][0]
        after = [d for d in deferrals.get(ids[0][1], []) if d[0] >= t_copy]
        if not after:
            return ""
        t_def, why = after[0]
        near = sorted({k for t, k in events if _secs(t_copy) - 5 <= _secs(t) <= _secs(t_def) + 1})
        return (f"queued {ids[0][1]} ({ids[0][0]}), reinjected {ids[1][1]} ({t_copy}), then the hand-over was "
                f"deferred at {t_def}: {why[:160]}; chaos then: {', '.join(near) or 'none'}; "
                f"retried, reinjected again {ids[2][1]} ({ids[2][0]})")

    return explain


def _handovers(mta: str, syslog: str) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[tuple[str, str]]]]:
    """(Message-ID -> [(time, queue id)] of every queue file made for it, in log order;
    queue id -> [(time, reason)] of its deferred hand-overs to the filter)."""
    created: dict[str, list[tuple[str, str]]] = {}
    deferrals: dict[str, list[tuple[str, str]]] = {}
    if mta == "postfix":
        line = r"^(\d\d:\d\d:\d\d) .*?postfix/"
        made = line + r"cleanup\[\d+\]: ([0-9A-F]+): message-id=(<[^>]*>)"
        deferred = line + r"(?:lmtp|smtp)\[\d+\]: ([0-9A-F]+): .*status=deferred \((.*)\)$"
    elif mta == "sendmail":
        line = r"^(\d\d:\d\d:\d\d) .*?sendmail\[\d+\]: "
        made = line + r"(\w+): from=.*?, msgid=(<[^>]*>)"
        deferred = line + r"(\w+): to=.*?mailer=smtpscanner,.*?(?:reply=(.*?), )?stat=Deferred(?:: (.*))?$"
    else:
        return created, deferrals
    for m in re.finditer(made, syslog, re.M):
        created.setdefault(m.group(3), []).append((m.group(1), m.group(2)))
    for m in re.finditer(deferred, syslog, re.M):
        why = next((g for g in m.groups()[2:] if g), "deferred")
        deferrals.setdefault(m.group(2), []).append((m.group(1), why))
    return created, deferrals


def _secs(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


def _deferrals(syslog: str) -> Counter[str]:
    """The MTA's reasons for putting a hand-over off, with numbers and names folded away so
    the same cause counts once: how each fault came back to the MTA (a 4xx or a broken connection)."""
    out: Counter[str] = Counter()
    pattern = r"status=deferred \((.*)\)$| == \S+ .*?defer \(-?\d+\): (.*)$|stat=Deferred: (.*)$"
    for m in re.finditer(pattern, syslog, re.M):
        why = next(g for g in m.groups() if g is not None)
        why = re.sub(r"\[[0-9.]+\]|\b[0-9A-F]{8,}\b|/tmp/\S+|\d+", "#", why)
        out[why[:110]] += 1
    return out


def _table(mta: str, messages: int, clients: int, seed: int, chaos: Chaos, v: verify.Verdict,
           deferred: Counter[str],
           sent_s: float, total_s: float) -> str:
    lines = [f"\n### Soak: {messages} messages, {mta}, {clients} clients, seed {seed}\n",
             "| chaos event | done | chosen, nothing running |", "|---|---|---|"]
    for k in KINDS:
        lines.append(f"| {k} | {chaos.kills[k]} | {chaos.missed[k]} |")
    lines.append(f"| (TempPath full, total seconds) | {chaos.full_seconds:.0f} | |")
    lines += ["", "| outcome | messages |", "|---|---|"]
    order = ["sent", "accepted by the MTA", "delivered exactly once", "delivered twice (explained)",
             "delivered twice (UNEXPLAINED)", "delivered more than twice"]
    for k in order:
        lines.append(f"| {k} | {v.counts[k]} |")
    lines.append(f"| **lost** | **{len(v.lost)}** |")
    for k, n in sorted(v.counts.items()):
        if k not in order:
            lines.append(f"| {k} | {n} |")
    lines.append(f"| MTA deferrals logged (each retried later) | {sum(deferred.values())} |")
    if deferred:
        lines += ["", "| the MTA's reason for a deferral (numbers folded to #) | times |", "|---|---|"]
        lines += [f"| {why.replace('|', '/')} | {n} |" for why, n in deferred.most_common(12)]
    lines += ["", f"Sending took {sent_s:.0f} s; until the queue was empty and every message checked: "
              f"{total_s:.0f} s ({messages / total_s:.1f} msgs/s overall)."]
    if v.duplicates:
        lines += ["", "Duplicates:"]
        lines += [f"- seq {seq}: {why}" for seq, why in v.duplicates]
    if v.problems:
        lines += ["", f"Problems ({len(v.problems)}):"] + [f"- {p}" for p in v.problems[:50]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--mta", choices=sorted(MTAS), default="postfix")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--deb", type=Path, help="package (default: newest dist/kav4mailservers_*_all.deb)")
    ap.add_argument("--logs", type=Path, help="keep the MTA's log and the chaos events in this directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.soak needs root (overlay mounts, namespaces), as the distro matrix does")
    r = soak(args.messages, args.mta, args.clients, args.seed, args.deb, log=lambda s: print(s, flush=True),
             logs=args.logs)
    print(r.table)
    return 0 if r.lost == 0 and not r.problems else 1


if __name__ == "__main__":
    sys.exit(main())
