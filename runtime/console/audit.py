"""The console's audit log: every action, allowed or refused, as one JSON line (guide 4.3).

One ``write(2)`` per line on an O_APPEND descriptor, so lines never interleave; values pass through
JSON so a CR/LF in a user name or a path cannot forge a line.
"""

from __future__ import annotations

import json
import os
import threading
import time


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, action: str, result: str, user: str = "", addr: str = "", **detail: object) -> None:
        rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "user": user, "addr": addr, "action": action,
               "result": result, **{k: v for k, v in detail.items() if v not in (None, "")}}
        line = (json.dumps(rec, ensure_ascii=True, default=str) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def read(self, limit: int = 200) -> list[dict[str, object]]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                lines = fh.readlines()[-limit:]
        except FileNotFoundError:
            return []
        out = []
        for line in reversed(lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
