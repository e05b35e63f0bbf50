"""Starting, stopping and querying each MTA inside a sandbox, in the foreground where it allows.

Postfix: `postfix start-fg` (master stays in the foreground), Exim: `exim4 -bdf`, Sendmail:
`sendmail -bD` (testing.md). Each is stopped by the PID we started (SIGTERM, then SIGKILL), Postfix
first through `postfix stop` so its children go cleanly. The run directories that Debian's init
scripts would create are created here, since no init system runs in the roots.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from .sandbox import Sandbox, SandboxError


@dataclass(frozen=True)
class MtaControl:
    kind: str
    prepare: str  # shell run before start
    start: tuple[str, ...]
    stop_cmd: tuple[str, ...] | None
    queue_cmd: tuple[str, ...]
    flush_cmd: tuple[str, ...]

    def start_in(self, sb: Sandbox, name: str = "mta", argv: tuple[str, ...] | None = None) -> None:
        if not (argv or self.start):
            return  # the qmail stand-in has no daemon: mail goes in through qmail-queue(8)
        if self.prepare:
            sb.sh(self.prepare).check()
        sb.spawn(name, list(argv or self.start))
        if not sb.wait_port(25, timeout=30):
            raise SandboxError(f"{self.kind} did not listen on 127.0.0.1:25\n{sb.log_tail()}")

    def stop_in(self, sb: Sandbox, name: str = "mta") -> None:
        if self.stop_cmd and sb.running(name):
            sb.run(list(self.stop_cmd), timeout=30)
            for _ in range(40):
                if not sb.running(name):
                    break
                time.sleep(0.25)
        sb.stop(name)

    def queued(self, sb: Sandbox) -> int:
        """Messages in the MTA's queue, as its own queue lister reports them."""
        if not self.queue_cmd:
            return 0
        out = sb.run(list(self.queue_cmd), timeout=30).stdout
        if self.kind == "exim":
            return int(out.strip() or 0)
        if self.kind == "postfix":
            m = re.search(r"in (\d+) Requests?", out)
            return int(m.group(1)) if m else 0
        m = re.search(r"Total requests: (\d+)", out)
        return int(m.group(1)) if m else 0

    def flush(self, sb: Sandbox) -> None:
        if self.flush_cmd:
            sb.run(list(self.flush_cmd), timeout=60)


CONTROLS: dict[str, MtaControl] = {
    "postfix": MtaControl(
        kind="postfix",
        # No Postfix runs in the sandbox before it starts, so a mailbox dotlock found then is stale:
        # left by a local(8) that `postfix stop` killed mid-delivery on a loaded machine.  Postfix
        # itself breaks one only after stale_lock_time (500 s), far past a scenario's patience.
        prepare="rm -f /var/mail/*.lock",
        start=("postfix", "start-fg"),
        stop_cmd=("postfix", "stop"),
        queue_cmd=("postqueue", "-p"),
        flush_cmd=("postqueue", "-f"),
    ),
    "exim": MtaControl(
        kind="exim",
        prepare="install -d -o Debian-exim -g Debian-exim -m 0755 /run/exim4",
        start=("exim4", "-bdf", "-q1m"),
        stop_cmd=None,
        queue_cmd=("exim4", "-bpc"),
        flush_cmd=("exim4", "-qff"),
    ),
    "sendmail": MtaControl(
        kind="sendmail",
        prepare="install -d -o smmta -g smmsp -m 02755 /run/sendmail/mta /run/sendmail/msp",
        start=("/usr/sbin/sendmail", "-bD", "-q1m"),
        stop_cmd=None,
        queue_cmd=("mailq",),
        flush_cmd=("/usr/sbin/sendmail", "-q"),
    ),
    "qmail": MtaControl(kind="qmail", prepare="", start=(), stop_cmd=None, queue_cmd=(), flush_cmd=()),
}
