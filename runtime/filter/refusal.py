"""A spawned session that cannot be served says why (issue 11 item 8).

When the MTA spawns ``smtpscanner --stdio`` (Postfix ``spawn``, Exim ``lmtp`` command) and the
configuration is unusable, exiting before the greeting leaves only "lost connection ... initial
server greeting" in the MTA's log.  Instead the session opens with ``421 4.3.0 <reason>`` (RFC 5321
4.2.5: service not available, the MTA keeps the mail and retries), so the reason reaches the MTA's
log and ``mailq``; the same line goes to syslog (facility mail) and, when it can be found and
opened, to the report file the administrator configured.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from runtime.config.lexer import Document
from runtime.report import EventLog, _one_line, to_syslog


def configured_report_file(config_path: str) -> str | None:
    """``[smtpscan.report] ReportFileName`` read leniently from a file the model refused (the
    error may be anywhere else in it); the schema default when the key is absent."""
    try:
        doc = Document.parse(Path(config_path).read_text(encoding="utf-8", errors="replace"))
        names = [e.value for e in doc.keys("smtpscan.report") if e.name == "ReportFileName"]
    except OSError:
        names = []
    if names:
        return names[-1] or None
    from runtime.config import loads_config

    return str(loads_config("").get("smtpscan.report", "ReportFileName")) or None


def refuse_session(reason: str, config_path: str) -> int:
    """Greet with 421 and the reason on stdout, log it, return smtpscanner's exit code (1)."""
    line = _one_line(reason).replace("\\r", " ").replace("\\n", " ")[:400]
    with contextlib.suppress(OSError):
        os.write(1, f"421 4.3.0 {line}\r\n".encode("utf-8", "replace"))
    to_syslog("smtpscanner", f"session refused: {line}")
    with contextlib.suppress(Exception):
        path = configured_report_file(config_path)
        if path:
            log = EventLog(path)
            log.fatal(f"session refused: {line}")
            log.close()
    return 1
