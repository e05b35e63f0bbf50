"""smtpscanner as ``qmail-queue`` (guide 4.4.2): message on fd 0, envelope on fd 1.

The envelope is ``F<sender>\\0`` then ``T<recipient>\\0`` for each recipient, then ``\\0``.  After
the scan the result goes to ForwardMailer, normally ``qmail:(/var/qmail/bin/queue.kav55)`` (the
original qmail-queue).  Exit codes are qmail-queue(8)'s: 0 queued, 11-40 permanent, others
temporary; the filter only uses temporary ones for its own failures, so qmail keeps the message.
"""

from __future__ import annotations

import asyncio
import os

from runtime.config import KavConfig
from runtime.filter.envelope import Envelope, Recipient
from runtime.filter.wiring import build
from runtime.report import EventLog

EXIT_OK = 0
EXIT_TEMP_REFUSED = 71  # "mail server temporarily rejected message"
EXIT_READ = 54  # unable to read the message or envelope
EXIT_ENVELOPE = 91  # envelope format error
EXIT_BUG = 81


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_envelope(raw: bytes) -> tuple[str, list[str]]:
    if not raw.startswith(b"F"):
        raise ValueError("envelope does not start with F")
    sender, sep, rest = raw[1:].partition(b"\0")
    if not sep:
        raise ValueError("sender not terminated")
    rcpts = []
    while rest and rest != b"\0":
        if not rest.startswith(b"T"):
            raise ValueError("recipient does not start with T")
        r, sep, rest = rest[1:].partition(b"\0")
        if not sep:
            raise ValueError("recipient not terminated")
        rcpts.append(r.decode("utf-8", "surrogateescape"))
    if rest != b"\0" or not rcpts:
        raise ValueError("envelope not terminated or without recipients")
    return sender.decode("utf-8", "surrogateescape"), rcpts


def run_qmail_queue(cfg: KavConfig, log: EventLog) -> int:
    try:
        message = _read_all(0)
        raw_env = _read_all(1)
    except OSError as exc:
        log.error(f"qmail-queue: cannot read message or envelope: {exc}")
        return EXIT_READ
    try:
        sender, rcpts = parse_envelope(raw_env)
    except ValueError as exc:
        log.error(f"qmail-queue: bad envelope: {exc}")
        return EXIT_ENVELOPE

    async def go() -> dict[str, str]:
        parts = build(cfg, log)
        try:
            return await parts.processor.process(Envelope(sender, [Recipient(r) for r in rcpts]), message,
                                                 per_recipient=False)
        finally:
            await parts.close()

    try:
        replies = asyncio.run(go())
    except Exception as exc:  # noqa: BLE001
        log.error(f"qmail-queue: internal error {exc!r}")
        return EXIT_BUG
    # qmail-queue has one exit code for all recipients: all delivered or the whole message again.
    return EXIT_OK if all(r.startswith("250") for r in replies.values()) else EXIT_TEMP_REFUSED
