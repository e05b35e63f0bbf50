"""bench/mta big mail: peak memory and time of smtpscanner + aveserver for 1, 10 and 50 MB messages.

``python -m bench.mta.bigmail`` (root: it runs in its own network namespace, ``unshare --net``,
so all traffic stays on a private loopback).

Each size N MB is a message whose attachment is 0.7 x N MB of text (base64 in the mail, so the
message is ~N MB), sent once as the plain file and once as a zip of it, through a standing
smtpscanner (SMTP in, daemon form) + aveserver using bench/filter's generated signatures, to a
file-backed SMTP sink. Reported: seconds per message (SMTP transaction: smtpscanner answers 250
only once the sink accepted), peak RSS summed over smtpscanner and aveserver (all workers) above
their idle RSS and in total, ratio of the total peak to the message size, and whether the
attachment arrived intact (SHA-256 of the decoded part).
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import hashlib
import io
import os
import random
import shutil
import smtplib
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from bench.filter.run import RSS, signatures, start_kav, stop_proc


class FileSink(socketserver.StreamRequestHandler):
    """Just enough SMTP to receive one big message per transaction into a file (never in memory)."""

    out_dir: Path = Path(".")
    count = 0

    def handle(self) -> None:
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        w = self.wfile.write
        w(b"220 sink ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                w(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1000000000\r\n")
            elif verb == b"DATA":
                w(b"354 go\r\n")
                FileSink.count += 1
                path = FileSink.out_dir / f"msg{FileSink.count}.eml"
                with open(path, "wb") as fh:
                    while (data := self.rfile.readline()) not in (b".\r\n", b""):
                        fh.write(data[1:] if data.startswith(b"..") else data)
                w(b"250 ok\r\n")
            elif verb == b"QUIT":
                w(b"221 bye\r\n")
                return
            else:
                w(b"250 ok\r\n")


def text_blob(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(5000)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rnd.choices(words, k=12)) + b"\n"
    return bytes(out[:size])


def message(attachment: bytes, name: str) -> bytes:
    head = (b"From: big@example.com\r\nTo: sink@example.com\r\nSubject: big " + name.encode() + b"\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n"
            b"Content-Type: text/plain\r\n\r\nA big attachment follows.\r\n\r\n--b1\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"" + name.encode()
            + b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    return head + base64.encodebytes(attachment).replace(b"\n", b"\r\n") + b"\r\n--b1--\r\n"


def attachment_digest(path: Path) -> str:
    msg = email.message_from_binary_file(open(path, "rb"), policy=email.policy.compat32)
    for part in msg.walk():
        if part.get_filename():
            return hashlib.sha256(part.get_payload(decode=True) or b"").hexdigest()
    return ""


def inside(sizes: list[int]) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-bigmail."))
    try:
        signatures(work / "bases")
        FileSink.out_dir = work
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), FileSink)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        procs, port = start_kav(work, server.server_address[1])
        rows = []
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=600) as c:  # warm-up: engine, connections
                c.sendmail("big@example.com", ["sink@example.com"], message(b"hello\n", "warm.txt"))
            time.sleep(1)
            idle = RSS([p.pid for p in procs])
            time.sleep(0.5)
            idle_rss = idle.stop()
            for mb in sizes:
                blob = text_blob(int(mb * 0.7 * 1_000_000), mb)
                zbuf = io.BytesIO()
                with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
                    z.writestr("big.txt", blob)
                for kind, data, name in (("plain", blob, "big.txt"), ("zip", zbuf.getvalue(), "big.zip")):
                    msg = message(data, name)
                    want = hashlib.sha256(data).hexdigest()
                    del data
                    rss = RSS([p.pid for p in procs])
                    t0 = time.perf_counter()
                    with smtplib.SMTP("127.0.0.1", port, timeout=600) as c:
                        c.sendmail("big@example.com", ["sink@example.com"], msg)
                    took = time.perf_counter() - t0
                    peak = rss.stop()
                    got = attachment_digest(work / f"msg{FileSink.count}.eml")
                    (work / f"msg{FileSink.count}.eml").unlink()
                    rows.append((mb, kind, len(msg), took, peak, got == want))
                    print(f"{mb:3d} MB {kind:5s} message {len(msg) / 1e6:6.1f} MB  {took:6.2f} s  "
                          f"peak RSS {peak / 2**20:7.1f} MiB (+{(peak - idle_rss) / 2**20:6.1f} over idle)  "
                          f"ratio {peak / len(msg):5.2f}x  intact {got == want}", flush=True)
                    del msg
        finally:
            for p in procs:
                stop_proc(p)
            server.shutdown()
        print(f"\nidle RSS (smtpscanner + aveserver): {idle_rss / 2**20:.1f} MiB")
        print("| message | size MB | seconds | s/MB | peak RSS MiB | above idle MiB | peak / size | intact |")
        print("|---|---|---|---|---|---|---|---|")
        for mb, kind, size, took, peak, ok in rows:
            print(f"| {mb} MB {kind} | {size / 1e6:.1f} | {took:.2f} | {took / (size / 1e6):.3f} | "
                  f"{peak / 2**20:.1f} | {(peak - idle_rss) / 2**20:.1f} | {peak / size:.2f} | {ok} |")
        return 0 if all(r[5] for r in rows) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,10,50", help="message sizes in MB")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.inside:
        return inside(sizes)
    if os.geteuid() != 0:
        raise SystemExit("bench.mta.bigmail needs root (a private network namespace)")
    script = 'ip link set lo up && exec "$0" -m bench.mta.bigmail --inside --sizes "$1"'
    return subprocess.call(["unshare", "--net", "--", "sh", "-c", script, sys.executable, args.sizes])


if __name__ == "__main__":
    sys.exit(main())
