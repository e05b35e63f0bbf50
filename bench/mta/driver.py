"""The load side of bench.mta, run inside the sandbox's network namespace (``nsenter -n``).

Started once per contender and concurrency level by :mod:`bench.mta.run`. It

* listens on 127.0.0.1:2526 as the probe sink (Postfix routes ``probe.test`` there) and notes
  when each probe message arrives, by the token in its Subject;
* runs the host's ``smtp-source`` against Postfix on 127.0.0.1:25 (clean stream, plus a 5 %
  EICAR stream in parallel, as bench/filter does) while a probe client sends one message at a
  time to ``probe@probe.test`` and times it from MAIL FROM to arrival at the probe sink;
* waits until Postfix's queue directories (host path given) hold nothing, so the rate counts
  mail that left Postfix for good (through the filter and back, to smtp-sink), not mail queued;
* prints one JSON line: elapsed seconds, messages, smtp-source error lines, probe latencies,
  messages left deferred.

Only loopback inside the namespace is used: nothing here can reach the host's network.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ARRIVED: dict[str, float] = {}


class ProbeSink(socketserver.StreamRequestHandler):
    """Just enough SMTP to take Postfix's delivery of a probe (one message per connection or many)."""

    def handle(self) -> None:
        # Replies to pipelined commands are small separate writes: without TCP_NODELAY the second
        # waits for the peer's delayed ACK (40 ms) and the probe measures that, not the filter.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        w = self.wfile.write
        w(b"220 probe ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                w(b"250-probe\r\n250 PIPELINING\r\n" if verb == b"EHLO" else b"250 probe\r\n")
            elif verb == b"DATA":
                w(b"354 go\r\n")
                token = ""
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    if data.startswith(b"Subject: probe "):
                        token = data.split()[2].decode()
                if token:
                    ARRIVED[token] = time.perf_counter()
                w(b"250 ok\r\n")
            elif verb == b"QUIT":
                w(b"221 bye\r\n")
                return
            else:
                w(b"250 ok\r\n")


def probe_loop(body: bytes, stop: threading.Event, sent: dict[str, float], limit: int) -> None:
    import smtplib

    while not stop.is_set() and len(sent) < limit:
        token = uuid.uuid4().hex
        msg = b"Subject: probe " + token.encode() + b"\r\n" + body
        t0 = time.perf_counter()
        try:
            with smtplib.SMTP("127.0.0.1", 25, timeout=60) as c:
                c.sendmail("probe@example.com", ["probe@probe.test"], msg)
        except (smtplib.SMTPException, OSError):
            stop.wait(0.2)
            continue
        sent[token] = t0
        # wait for this probe to arrive before the next one: one probe in flight at a time
        deadline = time.perf_counter() + 60
        while token not in ARRIVED and time.perf_counter() < deadline and not stop.is_set():
            time.sleep(0.0005)
        stop.wait(0.02)


def queue_files(spool: Path) -> tuple[int, int]:
    """(messages anywhere in Postfix's queue, of which deferred)."""
    total = deferred = 0
    for d in ("maildrop", "incoming", "active", "deferred", "hold"):
        for _, _, files in os.walk(spool / d):
            total += len(files)
            if d == "deferred":
                deferred += len(files)
    return total, deferred


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spool", type=Path, required=True, help="host path of the root's /var/spool/postfix")
    ap.add_argument("--clean", type=Path, required=True)
    ap.add_argument("--eicar", type=Path, required=True)
    ap.add_argument("--sessions", type=int, required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--probes", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 2526), ProbeSink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    body = args.clean.read_bytes().split(b"\n", 1)[1].replace(b"\n", b"\r\n")  # drop the Subject line
    n_bad = max(1, round(args.messages * 0.05)) if args.messages >= 20 else 0
    s_bad = max(1, round(args.sessions * 0.05))
    s_good = max(1, args.sessions - s_bad) if args.sessions > 1 else 1
    base = ["smtp-source", "-f", "load@example.com", "-t", "sink@example.com", "-M", "mta.test"]
    sent: dict[str, float] = {}
    stop = threading.Event()
    prober = threading.Thread(target=probe_loop, args=(body, stop, sent, args.probes), daemon=True)
    t0 = time.perf_counter()
    procs = []
    if args.messages:
        procs.append(subprocess.Popen([*base, "-s", str(s_good), "-m", str(args.messages - n_bad), "-F",
                                       str(args.clean), "127.0.0.1:25"], stderr=subprocess.PIPE))
    if n_bad:
        procs.append(subprocess.Popen([*base, "-s", str(s_bad), "-m", str(n_bad), "-F", str(args.eicar),
                                       "127.0.0.1:25"], stderr=subprocess.PIPE))
    if args.probes:
        prober.start()
    if not args.messages:  # idle: the probe alone, one session, one message at a time
        prober.join()
    errors = ""
    for p in procs:
        errors += p.communicate()[1].decode(errors="replace")
    accepted = time.perf_counter() - t0
    deadline = time.monotonic() + args.timeout
    left, deferred = queue_files(args.spool)
    while time.monotonic() < deadline:
        left, deferred = queue_files(args.spool)
        if left == deferred:
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    stop.set()
    if prober.is_alive():
        prober.join(65)
    # a probe still on its way must find the probe sink, or Postfix defers it and the next run counts it
    deadline = time.monotonic() + 30
    while any(t not in ARRIVED for t in sent) and time.monotonic() < deadline:
        time.sleep(0.01)
    server.shutdown()
    lat = [ARRIVED[t] - s for t, s in sent.items() if t in ARRIVED]
    json.dump({"elapsed": elapsed, "accepted": accepted, "messages": args.messages,
               "errors": errors.count("\n"), "error_text": errors[:500], "latency": lat,
               "probes_lost": len(sent) - len(lat), "left": left, "deferred": deferred}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
