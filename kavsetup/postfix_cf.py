"""Postfix main.cf / master.cf reader-editor that keeps every byte it does not edit.

Why our own: ``postconf -e/-M`` may not exist inside ``--root`` (a package build root, an image),
and it rewrites whole logical lines anyway.  We follow its semantics (postconf(5), master(5)):

* a *logical line* starts with a non-whitespace, non-``#`` character; a following line that
  starts with whitespace continues it; blank lines and ``#`` comment lines are skipped by
  Postfix and do not end a logical line (so they stay inside its span if more continuation
  follows);
* main.cf: ``name = value``; the last definition of a name wins (we edit that one, like
  ``postconf -e``);
* master.cf: fields ``service type private unpriv chroot wakeup maxproc command...``; a service is
  identified by ``service/type`` (like ``postconf -M name/type``).

Text is handled as ``str`` decoded with surrogateescape, so any byte survives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One logical line: lines ``start``..``end-1`` of the file; ``text`` their joined form."""

    start: int
    end: int
    text: str

    @property
    def name(self) -> str:
        return self.text.split("=", 1)[0].strip()

    @property
    def value(self) -> str:
        return self.text.split("=", 1)[1].strip() if "=" in self.text else ""

    @property
    def fields(self) -> list[str]:
        return self.text.split()

    @property
    def service_key(self) -> str:
        f = self.fields
        return f"{f[0]}/{f[1]}" if len(f) >= 2 else ""


def split_lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def newline_of(text: str) -> str:
    """The file's own line ending (CRLF files stay CRLF)."""
    return "\r\n" if "\n" in text and text.split("\n", 1)[0].endswith("\r") else "\n"


def _is_continuation(line: str) -> bool:
    return line[:1] in (" ", "\t") and line.strip() != "" and not line.strip().startswith("#")


def _is_ignored(line: str) -> bool:
    s = line.strip()
    return s == "" or s.startswith("#")


def entries(text: str) -> list[Entry]:
    lines = split_lines(text)
    out: list[Entry] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        if _is_ignored(line) or line[:1] in (" ", "\t"):
            i += 1
            continue
        parts = [line.strip()]
        end = i + 1
        j = i + 1
        while j < n:
            if _is_continuation(lines[j]):
                parts.append(lines[j].strip())
                end = j + 1
                j += 1
            elif _is_ignored(lines[j]):
                j += 1
            else:
                break
        out.append(Entry(i, end, " ".join(parts)))
        i = end
    return out


def last_param(text: str, name: str) -> Entry | None:
    found = None
    for e in entries(text):
        if "=" in e.text and e.name == name:
            found = e
    return found


def get_param(text: str, name: str) -> str | None:
    e = last_param(text, name)
    return e.value if e else None


def _replace_span(text: str, start: int, end: int, new: list[str]) -> str:
    lines = split_lines(text)
    return "".join(lines[:start] + new + lines[end:])


def _append(text: str, new_lines: list[str]) -> str:
    nl = newline_of(text)
    if text and not text.endswith("\n"):
        text += nl
    return text + "".join(new_lines)


def set_param(text: str, name: str, value: str) -> str:
    """``postconf -e name=value``: edit the effective definition in place, else append."""
    nl = newline_of(text)
    e = last_param(text, name)
    line = f"{name} = {value}{nl}"
    if e is None:
        return _append(text, [line])
    if e.value == value:
        return text
    return _replace_span(text, e.start, e.end, [line])


def span_text(text: str, e: Entry) -> str:
    return "".join(split_lines(text)[e.start:e.end])


def remove_span(text: str, e: Entry) -> str:
    return _replace_span(text, e.start, e.end, [])


def restore_span(text: str, e: Entry, original: str) -> str:
    return _replace_span(text, e.start, e.end, split_lines(original))


def find_service(text: str, key: str) -> Entry | None:
    for e in entries(text):
        if e.service_key == key:
            return e
    return None


def services(text: str) -> list[Entry]:
    return [e for e in entries(text) if len(e.fields) >= 8]


_PORT_RE = re.compile(r"^(?:(?P<host>.*):)?(?P<port>\d+)$")


def inet_ports(master_text: str) -> set[int]:
    """Loopback-reachable TCP ports that master.cf services already listen on.

    A service ``127.0.0.1:10025``, ``localhost:10025``, ``[::1]:10025`` or a bare ``10025`` (all
    interfaces) holds port 10025 on the loopback, so our filter must not use it."""
    taken: set[int] = set()
    for e in services(master_text):
        f = e.fields
        if f[1] != "inet":
            continue
        m = _PORT_RE.match(f[0])
        if not m:
            continue
        taken.add(int(m.group("port")))
    return taken
