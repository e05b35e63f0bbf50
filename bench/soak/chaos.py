"""The chaos loop: SIGKILL at random moments, and a full TempPath for a while (issue 19 item 1).

Runs on the host beside the sandbox and finds its victims among the processes of the sandbox's
network namespace (host PIDs, so a kill needs no nsenter and cannot hit anything outside):

* ``aveserver-worker``: one of the pre-forked workers (a child of the master); the master forks
  a new one (runtime/prefork.py).
* ``aveserver-master``: the master itself; its workers follow it (PR_SET_PDEATHSIG). Nothing in
  the root restarts it (no systemd there), so after a random 1-5 s outage the loop starts it again
  through the package's init script: what the unit's ``Restart=on-failure`` does on a systemd host.
* ``smtpscanner``: any smtpscanner process (Postfix's spawn form: the per-connection process the
  spawn(8) service started, in the middle of an LMTP/SMTP session; daemon form: master or worker,
  a killed master restarted through its init script like aveserver's).
* ``reinjection``: the MTA's process that takes the scanned mail back (Postfix: the smtpd of the
  ``127.0.0.1:10026`` service, which Postfix's master starts again on the next connection; Exim and
  Sendmail: the per-connection child of the reinjecting instance's daemon).
* ``temppath-full``: fills the tmpfs mounted on TempPath (inside the sandbox's mount namespace, so
  the host's disk is never filled) for 2-10 s, then frees it.

Every event is logged with its time so the checker can put a duplicate next to its cause.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

KINDS = ("aveserver-worker", "aveserver-master", "smtpscanner", "reinjection", "temppath-full")
WEIGHTS = (30, 10, 25, 20, 15)


def listener_children(procs: list[tuple[psutil.Process, list[str]]], port: int, ns_pid: int) -> list[psutil.Process]:
    """Children of the daemon listening on ``port``: the sessions it forked (Exim, Sendmail).

    The listener is found through the namespace's own /proc/PID/net/tcp (psutil would read the
    caller's namespace) and the socket inode among the processes' descriptors."""
    inodes = set()
    try:
        for line in Path(f"/proc/{ns_pid}/net/tcp").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    except OSError:
        return []
    daemons = set()
    for p, _ in procs:
        try:
            fds = os.listdir(f"/proc/{p.pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{p.pid}/fd/{fd}") in inodes:
                    daemons.add(p.pid)
                    break
            except OSError:
                continue
    out = []
    for p, _ in procs:
        try:
            if p.ppid() in daemons and p.pid not in daemons:
                out.append(p)
        except psutil.Error:
            continue
    return out


def netns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


@dataclass
class Event:
    at: float  # time.time()
    kind: str
    detail: str


@dataclass
class Chaos:
    """One loop over one sandbox. ``restart_aveserver`` / ``restart_smtpscanner`` play the init system;
    ``fill`` / ``unfill`` run inside the sandbox; ``reinjection`` picks the MTA's reinjection processes."""

    init_pid: int
    reinjection: Callable[[list[tuple[psutil.Process, list[str]]]], list[psutil.Process]]
    restart_aveserver: Callable[[], None]
    restart_smtpscanner: Callable[[], None] | None
    fill: Callable[[], None]
    unfill: Callable[[], None]
    seed: int = 1
    pause: tuple[float, float] = (0.2, 1.5)
    events: list[Event] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)  # chosen, but nothing of that kind was running
    full_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.ns = netns(self.init_pid)
        self.rnd = random.Random(self.seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos")

    # -- victims ---------------------------------------------------------------------------------
    def procs(self) -> list[tuple[psutil.Process, list[str]]]:
        out = []
        for p in psutil.process_iter():
            if netns(p.pid) != self.ns:
                continue
            try:
                out.append((p, p.cmdline()))
            except psutil.Error:
                continue
        return out

    def victims(self, kind: str) -> list[psutil.Process]:
        procs = self.procs()
        ave = {p.pid for p, cmd in procs if any(a.endswith("aveserver") for a in cmd[:3])}
        out = []
        for p, cmd in procs:
            try:
                ppid = p.ppid()
            except psutil.Error:
                continue
            if kind == "aveserver-worker" and p.pid in ave and ppid in ave:
                out.append(p)
            elif kind == "aveserver-master" and p.pid in ave and ppid not in ave:
                out.append(p)
            elif kind == "smtpscanner" and any(a.endswith("smtpscanner") for a in cmd[:3]):
                out.append(p)
        if kind == "reinjection":
            out = self.reinjection(procs)
        return out

    # -- the loop ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def note(self, kind: str, detail: str) -> None:
        self.events.append(Event(time.time(), kind, detail))

    def _run(self) -> None:
        while not self._stop.wait(self.rnd.uniform(*self.pause)):
            kind = self.rnd.choices(KINDS, WEIGHTS)[0]
            try:
                self.strike(kind)
            except Exception as exc:  # the loop must outlive a victim that vanished under it
                self.note("error", f"{kind}: {exc!r}")

    def strike(self, kind: str) -> None:
        if kind == "temppath-full":
            self.fill()
            self.kills[kind] += 1
            hold = self.rnd.uniform(2, 10)
            self.note(kind, f"TempPath full for {hold:.1f}s")
            self._stop.wait(hold)
            self.unfill()
            self.full_seconds += hold
            return
        victims = self.victims(kind)
        if not victims:
            self.missed[kind] += 1
            return
        victim = self.rnd.choice(victims)
        master_of_scanner = kind == "smtpscanner" and self.restart_smtpscanner is not None and not any(
            v.pid == victim.ppid() for v in victims)
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.Error:
            self.missed[kind] += 1
            return
        self.kills[kind] += 1
        self.note(kind, f"SIGKILL host pid {victim.pid}")
        if kind == "aveserver-master" or master_of_scanner:
            outage = self.rnd.uniform(1, 5)
            self._stop.wait(outage)
            (self.restart_aveserver if kind == "aveserver-master" else self.restart_smtpscanner)()  # type: ignore[misc]
            self.note("restart", f"{kind} restarted by its init script after {outage:.1f}s")
