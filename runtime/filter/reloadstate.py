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
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.fsutil import atomic_write, read_trusted


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
        try:  # 0640 like the configuration (root:filter): a refusal quotes the file's values
            atomic_write(self.path_for(pid_path), json.dumps(asdict(self)).encode() + b"\n", mode=0o640)
        except OSError as exc:  # the console then reports no answer; mail is not affected
            print(f"smtpscanner: cannot write {self.path_for(pid_path)}: {exc.strerror}", file=sys.stderr)


def read_state(pid_path: Path, owners: tuple[int, ...]) -> ReloadState | None:
    data = read_trusted(ReloadState.path_for(pid_path), owners)
    if data is None:
        return None
    try:
        raw = json.loads(data)
        return ReloadState(**{k: raw[k] for k in ReloadState.__dataclass_fields__ if k in raw})
    except (ValueError, TypeError, KeyError):
        return None
