"""The soak's SMTP clients, run inside the sandbox's network namespace (``nsenter -n``).

``--clients`` threads take message numbers from one queue and send them to the MTA on
127.0.0.1:25, up to 20 messages per connection (RSET between), as a relaying MTA would. A client
behaves like a real one: a 4xx or a dropped connection means "try again later", so the message
goes back into the queue after a pause; a 5xx is a permanent failure and is recorded (the chaos
never touches the MTA's port 25 listener, so none is expected). A message whose end-of-DATA reply
was lost (connection dropped after the dot) is sent again and marked ``ambiguous``: the one case
where the client itself may cause a duplicate, and the checker explains it so.

Prints one JSON object: per message the attempts, the final reply and whether the client ever
saw an ambiguous end of DATA; plus the wall time.
"""

from __future__ import annotations

import argparse
import json
import queue
import smtplib
import sys
import threading
import time
from pathlib import Path

from bench.soak.corpus import RECIPIENT, build

PER_CONNECTION = 20


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--protected", type=Path, required=True, help="directory with protected*.zip")
    ap.add_argument("--port", type=int, default=25)
    ap.add_argument("--give-up", type=float, default=1800, help="seconds after which retries stop")
    args = ap.parse_args()
    zips = [p.read_bytes() for p in sorted(args.protected.glob("protected*.zip"))]
    todo: queue.Queue[int] = queue.Queue()
    for i in range(args.messages):
        todo.put(i)
    state: dict[int, dict[str, object]] = {i: {"attempts": 0, "reply": "", "ambiguous": False}
                                           for i in range(args.messages)}
    lock = threading.Lock()
    done = threading.Event()
    remaining = [args.messages]
    t0 = time.monotonic()

    def finish(seq: int, reply: str) -> None:
        with lock:
            state[seq]["reply"] = reply
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    def retry(seq: int, reply: str) -> None:
        with lock:
            state[seq]["reply"] = reply
        if time.monotonic() - t0 > args.give_up:
            finish(seq, "gave up: " + reply)
            return
        threading.Timer(2.0, todo.put, (seq,)).start()

    def worker() -> None:
        conn: smtplib.SMTP | None = None
        sent_on_conn = 0
        while not done.is_set():
            try:
                seq = todo.get(timeout=0.5)
            except queue.Empty:
                continue
            _, raw = build(args.seed, seq, zips)
            raw = raw.replace(b"\n", b"\r\n")  # smtplib sends bytes as given; Sendmail refuses bare LF
            with lock:
                state[seq]["attempts"] = int(state[seq]["attempts"]) + 1  # type: ignore[call-overload]
            try:
                if conn is None or sent_on_conn >= PER_CONNECTION:
                    if conn is not None:
                        try:
                            conn.quit()
                        except (smtplib.SMTPException, OSError):
                            pass
                    conn = smtplib.SMTP("127.0.0.1", args.port, local_hostname="client.example.org", timeout=300)
                    conn.ehlo()  # Exim and Sendmail refuse MAIL before EHLO (Postfix lets it pass)
                    sent_on_conn = 0
                else:
                    conn.rset()
                code, msg = conn.mail(f"client{seq % 20}@client.example.org")
                if code != 250:
                    raise smtplib.SMTPResponseException(code, msg)
                code, msg = conn.rcpt(RECIPIENT)
                if code not in (250, 251):
                    raise smtplib.SMTPResponseException(code, msg)
                try:
                    code, msg = conn.data(raw)
                except (smtplib.SMTPServerDisconnected, OSError):
                    with lock:  # the dot may have been taken: a resend can be a duplicate
                        state[seq]["ambiguous"] = True
                    raise
                sent_on_conn += 1
                if code == 250:
                    finish(seq, f"{code} {msg.decode(errors='replace')}")
                else:
                    raise smtplib.SMTPResponseException(code, msg)
            except smtplib.SMTPResponseException as exc:
                reply = f"{exc.smtp_code} {exc.smtp_error!r}"
                if 500 <= exc.smtp_code < 600:
                    finish(seq, reply)
                else:
                    retry(seq, reply)
                conn = _drop(conn)
            except (smtplib.SMTPException, OSError) as exc:
                retry(seq, f"connection: {exc!r}")
                conn = _drop(conn)
        _drop(conn)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.clients)]
    for t in threads:
        t.start()
    done.wait()
    for t in threads:
        t.join(10)
    json.dump({"elapsed": time.monotonic() - t0, "messages": state}, sys.stdout)
    print()
    return 0


def _drop(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except OSError:
            pass
    return None


if __name__ == "__main__":
    sys.exit(main())
