"""Edit ``kav4mailservers.conf`` in place, the way an administrator would with an editor.

Only the lines of the keys being set change; comments, blank lines, order, line endings and the
spelling of everything else stay as they were.  Setting a key to the value it already has leaves
the file byte-identical.  The result is validated as a whole before it replaces the file, so a
bad value never reaches disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.config import schema as S
from runtime.config.lexer import Document, Entry
from runtime.config.model import ConfigError, Message, loads_config
from runtime.fsutil import atomic_write


@dataclass(frozen=True)
class Assignment:
    section: str
    key: str
    value: str  # as it will be written (canonical form)


def parse_assignment(text: str, filename: str = "<command line>") -> Assignment:
    """``section.Key=value``: the key is what follows the last dot (``aveserver.options.DetachFromTerminal=no``)."""
    lhs, sep, value = text.partition("=")
    if not sep or "." not in lhs:
        raise ConfigError([Message(filename, None, None, None, f"{text!r}: expected section.Key=value")])
    section, _, key = lhs.strip().rpartition(".")
    return normalise(section, key, value, filename)


def normalise(section: str, key: str, value: Any, filename: str = "<command line>") -> Assignment:
    canon, _ = S.canonical_section(section)
    schema = S.section_schema(canon)
    if schema is None:
        raise ConfigError([Message(filename, None, section, None, "unknown section")])
    spec = schema.key(key)
    if spec is None:
        from runtime.config.model import _did_you_mean

        raise ConfigError([Message(filename, None, canon, key, f"unknown key{_did_you_mean(key, schema.key_names())}")])
    raw = value if isinstance(value, str) else spec.type.format(value)
    try:
        typed = spec.type.parse(raw)
    except ValueError as exc:
        raise ConfigError([Message(filename, None, canon, spec.name, str(exc))]) from None
    return Assignment(canon, spec.name, spec.type.format(typed))


def _section_of(doc: Document, section: str) -> tuple[int | None, int | None]:
    """(index of the header entry, index of the last entry in that section) for ``section``."""
    head = last = None
    current = None
    for i, e in enumerate(doc.entries):
        if e.kind == "section":
            current = S.canonical_section(e.name)[0]
            if current == section and head is None:
                head = last = i
            continue
        if current == section and head is not None:
            last = i
    return head, last


def _matching_keys(doc: Document, section: str, key: str) -> list[Entry]:
    spec = S.section_schema(section)
    assert spec is not None
    out = []
    for e in doc.entries:
        if e.kind != "key" or e.section is None or S.canonical_section(e.section)[0] != section:
            continue
        found = spec.key(e.name)
        if found is not None and found.name == key:
            out.append(e)
    return out


def apply_assignments(text: str, assignments: list[Assignment], filename: str = "<string>") -> str:
    """Return ``text`` with the assignments applied (pure; no I/O)."""
    doc = Document.parse(text)
    eol = doc.eol()
    for a in assignments:
        spec = S.section_schema(a.section)
        assert spec is not None
        key_spec = spec.key(a.key)
        assert key_spec is not None
        existing = _matching_keys(doc, a.section, a.key)
        if existing:
            # As the loader reads it: a list key's lines add up, for any other key the last one wins
            # (found by tests/fuzz/test_fuzz_config.py: a repeated scalar key was rewritten).
            current_raw = ",".join(e.value for e in existing) if key_spec.type.is_list else existing[-1].value
            try:
                same = key_spec.type.parse(current_raw) == key_spec.type.parse(a.value)
            except ValueError:
                same = False
            if same:
                continue
            first = existing[0]
            # Keep the line's own ending (and lack of one at end of file).
            last_line = doc.lines[first.last]
            line_eol = last_line[len(last_line.rstrip("\r\n")) :]
            new_line = f"{a.key}={a.value}{line_eol}"
            # Remove the other occurrences (a repeated list key becomes one line), bottom-up.
            for e in reversed(existing[1:]):
                del doc.lines[e.first : e.last + 1]
            doc.lines[first.first : first.last + 1] = [new_line]
        else:
            head, last = _section_of(doc, a.section)
            if head is None:
                if doc.lines and not doc.lines[-1].endswith(("\n", "\r")):
                    doc.lines[-1] += eol
                nl = _eol_after(doc.lines[-1], eol) if doc.lines else eol
                if doc.lines and _continued(doc.lines[-1]):
                    doc.lines.append(nl)  # end the dangling continuation: the header stays a header
                if doc.lines and doc.lines[-1].strip():
                    doc.lines.append(nl)
                doc.lines += [f"[{a.section}]{nl}", f"{a.key}={a.value}{nl}"]
            else:
                # After the section's last key (or its header), before trailing comments/blanks.
                entries = doc.entries[head : last + 1]
                anchor = max((e for e in entries if e.kind in ("key", "section")), key=lambda e: e.last)
                at = anchor.last + 1
                if not doc.lines[anchor.last].endswith(("\n", "\r")):
                    doc.lines[anchor.last] += eol
                nl = _eol_after(doc.lines[anchor.last], eol)
                new_line = f"{a.key}={a.value}{nl}"
                doc.lines[at:at] = [nl, new_line] if _continued(doc.lines[anchor.last]) else [new_line]
        doc.reparse()
    return doc.text()


def _eol_after(line: str, eol: str) -> str:
    """The ending for lines inserted after ``line``: a line ending in a bare CR followed by one
    starting with LF would read back as a single CRLF line, so after a bare CR only CR is safe."""
    return "\r" if line.endswith("\r") else eol


def _continued(line: str) -> bool:
    """Whether a physical line ends in a continuation backslash (the next line would join it)."""
    return line.rstrip("\r\n").rstrip().endswith("\\")


def set_values(path: str | Path, assignments: list[Assignment] | dict[str, Any]) -> bool:
    """Apply assignments to the file at ``path``; return whether it changed.

    ``assignments`` may be a mapping ``{"section.Key": value}``.  Raises :class:`ConfigError`
    (and writes nothing) when the result would not validate.
    """
    p = Path(path)
    if isinstance(assignments, dict):
        items = []
        for dotted, value in assignments.items():
            section, _, key = dotted.rpartition(".")
            items.append(normalise(section, key, value, str(p)))
        assignments = items
    raw = p.read_bytes()
    text = raw.decode("utf-8")
    new = apply_assignments(text, assignments, str(p))
    if new == text:
        return False
    loads_config(new, filename=str(p))  # validate the whole result before it replaces the file
    atomic_write(p, new.encode("utf-8"))
    return True


# -- span operations: find, remove and restore one key; drop a section left empty ----------------
# kavsetup's uninstall reverses its own edits with these (one model of the format), so a
# continued value, a ``;`` comment, CRLF or a missing final newline is read exactly as the
# runtime reads it.  All are pure functions of the text.


def key_entries(doc: Document, section: str, key: str) -> list[Entry]:
    """Every occurrence of ``key`` in ``section`` (both canonical), spelled as the loader reads it:
    section aliases (``[smtpscanner.general]``), key case and the guide's spellings included."""
    return _matching_keys(doc, section, key) if S.section_schema(section) is not None else []


def key_value(text: str, section: str, key: str) -> str | None:
    """The key's value as the loader joins it (continuations, quotes, repeats), None when unset."""
    found = key_entries(Document.parse(text), section, key)
    return ",".join(e.value for e in found) if found else None


def key_lines(text: str, section: str, key: str) -> list[str]:
    """The physical lines (endings included) of every occurrence of the key, in file order."""
    doc = Document.parse(text)
    return [line for e in key_entries(doc, section, key) for line in doc.lines[e.first : e.last + 1]]


def replace_key(text: str, section: str, key: str, lines: list[str]) -> str:
    """Remove every occurrence of the key and put ``lines`` (physical lines, e.g. from
    :func:`key_lines` of an older image; empty: remove only) where the first one was."""
    doc = Document.parse(text)
    found = key_entries(doc, section, key)
    if not found:
        return text
    at = found[0].first
    for e in reversed(found):
        del doc.lines[e.first : e.last + 1]
    new = list(lines)
    if new and not new[-1].endswith(("\n", "\r")) and at < len(doc.lines):
        new[-1] += doc.eol()  # it was the last line of its file; here more follows
    doc.lines[at:at] = new
    return doc.text()


def has_section(text: str, section: str) -> bool:
    """Whether a header of ``section`` (canonical) is written in the text."""
    return any(e.kind == "section" and S.canonical_section(e.name)[0] == section
               for e in Document.parse(text).entries)


def drop_section_if_empty(text: str, section: str) -> str:
    """Remove the first ``[section]`` header when no key is left under it, with the blank line
    before it (:func:`apply_assignments` adds both for a new section); comments under it stay."""
    doc = Document.parse(text)
    entries = doc.entries
    head = next((i for i, e in enumerate(entries)
                 if e.kind == "section" and S.canonical_section(e.name)[0] == section), None)
    if head is None:
        return text
    for e in entries[head + 1 :]:
        if e.kind == "section":
            break
        if e.kind == "key":
            return text
    at = entries[head].first
    del doc.lines[at]
    if at > 0 and not doc.lines[at - 1].strip():
        del doc.lines[at - 1]
    return doc.text()
