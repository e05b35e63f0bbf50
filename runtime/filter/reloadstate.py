"""smtpscanner's reload state: what the standing daemon publishes beside its pid file
(``<PidFile>.state``, JSON) when it starts and after each SIGHUP (guide 6.4.1's reload, for the
filter; issue 18).

Its own small module because two programs share it: smtpscanner writes it
(:mod:`runtime.filter.serve`), kavconsole reads it to report "reloaded (generation N)" or why the
reload was refused, without parsing the event log (which may be syslog or stderr) and without
loading the filter's SMTP machinery.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.fsutil import atomic_write


@dataclass
class ReloadState:
    pid: int
    config: str  # the absolute path of the file the daemon was started with (and re-reads)
    generation: int = 1
    attempts: int = 0  # SIGHUPs handled (refused ones too): the console waits for this to move
    result: str = "started"  # started | reloaded | refused
    message: str = ""
    restart_needed: list[str] = field(default_factory=list)
    loaded_at: float = field(default_factory=time.time)  # when the configuration in use was read

    @staticmethod
    def path_for(pid_path: Path) -> Path:
        return pid_path.with_suffix(".state")

    def write(self, pid_path: Path | None) -> None:
        if pid_path is None:
            return
        try:
            atomic_write(self.path_for(pid_path), json.dumps(asdict(self)).encode() + b"\n", mode=0o644)
        except OSError as exc:  # the console then reports no answer; mail is not affected
            print(f"smtpscanner: cannot write {self.path_for(pid_path)}: {exc.strerror}", file=sys.stderr)


def read_trusted(path: Path, owners: tuple[int, ...], limit: int = 65536) -> bytes | None:
    """A small file another program wrote (the pid file, the state), or None: read only when it is
    a regular file (never through a link) owned by root or one of ``owners`` and writable by its
    owner alone, so nobody else can plant the pid the console is about to signal."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, *owners) or st.st_mode & 0o022:
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def read_state(pid_path: Path, owners: tuple[int, ...]) -> ReloadState | None:
    data = read_trusted(ReloadState.path_for(pid_path), owners)
    if data is None:
        return None
    try:
        raw = json.loads(data)
        return ReloadState(**{k: raw[k] for k in ReloadState.__dataclass_fields__ if k in raw})
    except (ValueError, TypeError, KeyError):
        return None
