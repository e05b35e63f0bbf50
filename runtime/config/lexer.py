"""Lossless lexer for the ``kav4mailservers.conf`` INI dialect.

Why not configobj: it refuses repeated keys (``DuplicateError``), which the 5.x files use for
lists (one mask per line, see docs/formats.md), it rewrites ``Key=Value`` as
``Key = Value`` and it keeps no line numbers for error messages.  Administrators expect an
untouched file to stay byte-identical and every complaint to name ``FILE:LINE``; so the file is
kept as the list of its physical lines and edits replace only the lines they concern.

Dialect (guide 4.1, 6.x examples; format notes "Lexical form"):
``[section]`` headers, ``Key=Value`` lines, ``#`` or ``;`` full-line comments, blank lines,
and a trailing backslash that continues a value on the next line (the guide prints long values
that way, e.g. ``ForwardMailer=smtp: (/usr/sbin/sendmail -bs \\`` / ``-C /etc/mail/sendmail.cf)``).
``#`` inside a value is data (regexes and commands may hold it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SECTION_RE = re.compile(r"^[ \t]*\[[ \t]*([^\]]*?)[ \t]*\][ \t]*$")
_KEY_RE = re.compile(r"^[ \t]*([A-Za-z0-9_.\-]+)[ \t]*=(.*)$", re.DOTALL)


def split_eol(raw: str) -> tuple[str, str]:
    """Split a physical line into its body and its line ending ('\\r\\n', '\\n', '\\r' or '')."""
    if raw.endswith("\r\n"):
        return raw[:-2], "\r\n"
    if raw.endswith(("\n", "\r")):
        return raw[:-1], raw[-1]
    return raw, ""


@dataclass
class Entry:
    """One logical line: a section header, a key, a comment, a blank, or junk.

    ``first``/``last`` are 0-based indexes into :attr:`Document.lines` (a key continued with
    backslashes spans several physical lines).
    """

    kind: str  # "section" | "key" | "comment" | "blank" | "junk"
    first: int
    last: int
    section: str | None  # the section this entry sits in (None before the first header)
    name: str = ""  # section name or key name as written
    value: str = ""  # key value, continuations joined, surrounding blanks and quotes removed

    @property
    def lineno(self) -> int:
        """1-based line number, as editors and error messages count."""
        return self.first + 1


@dataclass
class Document:
    """A configuration file as physical lines plus the logical entries parsed from them."""

    lines: list[str]
    entries: list[Entry] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Document:
        doc = cls(lines=text.splitlines(keepends=True))
        doc.reparse()
        return doc

    def text(self) -> str:
        return "".join(self.lines)

    def eol(self) -> str:
        """The line ending the file mostly uses, so inserted lines match it."""
        crlf = sum(1 for line in self.lines if line.endswith("\r\n"))
        lf = sum(1 for line in self.lines if line.endswith("\n")) - crlf
        return "\r\n" if crlf > lf else "\n"

    def reparse(self) -> None:
        self.entries = []
        section: str | None = None
        i = 0
        n = len(self.lines)
        while i < n:
            body, _ = split_eol(self.lines[i])
            stripped = body.strip()
            if not stripped:
                self.entries.append(Entry("blank", i, i, section))
                i += 1
                continue
            if stripped[0] in "#;":
                self.entries.append(Entry("comment", i, i, section))
                i += 1
                continue
            m = _SECTION_RE.match(body)
            if m:
                section = m.group(1)
                self.entries.append(Entry("section", i, i, section, name=section))
                i += 1
                continue
            m = _KEY_RE.match(body)
            if not m:
                self.entries.append(Entry("junk", i, i, section, value=stripped))
                i += 1
                continue
            name, value = m.group(1), m.group(2)
            first = i
            # Backslash continuation: join with the next physical line's text.
            onto_blank = False
            while value.rstrip().endswith("\\") and i + 1 < n:
                value = value.rstrip()[:-1].rstrip() + " "
                i += 1
                nxt, _ = split_eol(self.lines[i])
                value += nxt.strip()
                if not nxt.strip():
                    # Continued onto a blank line: that is continuing onto nothing, as at the end of
                    # the file, and the value ends here even if it still ends in a backslash
                    # (``a \\``: the editor's blank line after it must not let it swallow a header).
                    onto_blank = True
                    break
            if value.rstrip().endswith("\\") and not onto_blank:
                # A continuation with nothing after it (end of file) continues onto nothing: the
                # value is the same whether or not a line is later appended below (the editor does).
                value = value.rstrip()[:-1]
            self.entries.append(Entry("key", first, i, section, name=name, value=unquote(value.strip())))
            i += 1

    def keys(self, section: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == "key" and e.section == section]

    def section_names(self) -> list[str]:
        """Section names in file order, each once."""
        seen: dict[str, None] = {}
        for e in self.entries:
            if e.kind == "section":
                seen.setdefault(e.name, None)
        return list(seen)


def unquote(value: str) -> str:
    """Remove one pair of surrounding double quotes (front-ends of the time wrote some values quoted)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value
