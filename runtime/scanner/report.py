"""kavscanner's report and console output (guide 6.8, 6.8.1, 6.8.2).

Lines go through ``runtime.report.EventLog`` (``[date time L] STRING``, one ``write`` per line,
control characters escaped, so a file name holding a newline stays one record).  Messages about
scanning are written at level 4 (Activity); the start, the area, the database and the statistics
at level 3 (Info); problems at 1-2.

Which objects are written is the *object detail* (``-j`` for the report, ``-x`` for the console):

== ==================================================================
0  no message per object (statistics only)
1  INFECTED, CUREFAILED, CURED
2  and WARNING, SUSPICIOUS
3  and CORRUPTED, PROTECTED, ERROR, unreadable files: everything but OK
4  and OK, plus objects skipped (special files, links, excluded, iChecker)
== ==================================================================

The console shows the same lines as the report (6.8.2) unless ``-q``; with a ``[display]``
section, ``ShowOK``/``ShowContainerResultOnly`` and ``-x`` shape it.  On a terminal a progress
line (files, MB, rate, ETA) is redrawn in place; nothing of it when standard output is not a tty.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from runtime.engine.verdict import Status, Verdict
from runtime.report import ACTIVITY, EventLog

DETAIL = {
    Status.INFECTED: 1,
    Status.CUREFAILED: 1,
    Status.CURED: 1,
    Status.WARNING: 2,
    Status.SUSPICIOUS: 2,
    Status.CORRUPTED: 3,
    Status.PROTECTED: 3,
    Status.ERROR: 3,
    Status.CLEAN: 4,
}


def quote(path: str) -> str:
    return f'"{path}"'


def object_lines(v: Verdict, short_object: bool, short_container: bool) -> list[str]:
    """The 6.8.1 message(s) for one file's verdict."""
    inner = [o for o in v.objects if o.path != v.path and o.status is not Status.CLEAN]
    if not inner:
        top = [o for o in v.objects if o.path == v.path]
        if not top:
            return [f"{quote(v.path)} {v.status.report_word}"]
        if short_object:
            return [f"{quote(v.path)} {v.status.report_word}"]
        return [o.report_line() for o in top]
    if short_container:
        return [f"{quote(v.path)} {v.status.report_word}"]
    return [quote(v.path), *[o.report_line() for o in inner]]


@dataclass
class Sink:
    """One destination (the report file, or the console) with its own object detail and format."""

    log: EventLog
    detail: int
    short_object: bool = False
    short_container: bool = False
    show_ok: bool | None = None  # [display] ShowOK overrides the detail for clean files
    console: bool = False  # shares the terminal with the progress line

    def wants(self, status: Status) -> bool:
        if status is Status.CLEAN and self.show_ok is not None:
            return self.show_ok
        return self.detail >= DETAIL[status]


@dataclass
class Progress:
    stream: TextIO
    started: float = field(default_factory=time.monotonic)
    last: float = 0.0
    shown: bool = False

    def draw(self, files: int, nbytes: int, total_files: int | None, total_bytes: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        el = max(now - self.started, 1e-6)
        rate = nbytes / el
        eta = ""
        if total_bytes is not None and rate > 0:
            left = max(total_bytes - nbytes, 0) / rate
            eta = f", ETA {int(left) // 60}:{int(left) % 60:02d}"
        of = f"/{total_files}" if total_files is not None else ""
        self.stream.write(f"\r\033[K{files}{of} files, {nbytes / 1e6:.1f} MB, {files / el:.0f} files/s, "
                          f"{rate / 1e6:.1f} MB/s{eta}")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


class Reporter:
    def __init__(self, sinks: list[Sink], progress: Progress | None = None) -> None:
        self.sinks = sinks
        self.progress = progress

    def _emit(self, level: int, text: str, sink: Sink) -> None:
        if self.progress is not None and sink.console:
            self.progress.clear()
        sink.log.log(level, text)

    def message(self, level: int, text: str) -> None:
        for s in self.sinks:
            self._emit(level, text, s)

    def verdict(self, v: Verdict, extra: list[str] | None = None) -> None:
        for s in self.sinks:
            if not s.wants(v.status):
                continue
            lines = object_lines(v, s.short_object, s.short_container)
            for i, line in enumerate(lines):
                tail = f" ({'; '.join(extra)})" if extra and i == len(lines) - 1 else ""
                self._emit(ACTIVITY, line + tail, s)

    def event(self, path: str, word: str, why: str, detail: int, level: int) -> None:
        """A non-verdict event about an object (unreadable, skipped) at a given object detail."""
        for s in self.sinks:
            if s.detail >= detail:
                self._emit(level, f"{quote(path)} {word}" + (f" {why}" if why else ""), s)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.clear()
        for s in self.sinks:
            s.log.close()


def console_log(stream: TextIO | None = None) -> EventLog:
    return EventLog(None, level=10, stream=stream if stream is not None else sys.stdout)
