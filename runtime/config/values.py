"""Value types of ``kav4mailservers.conf``: how a raw string becomes a typed value and back.

Each type is a small object with ``parse`` (raise :class:`ValueError` with a message a mail
administrator understands) and ``format`` (the canonical spelling we write: ``yes``/``no`` for
booleans, ``0640`` for permissions, comma lists).  Keeping both directions in one place is what
lets the loader and the writer never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

TRUE_WORDS = frozenset({"yes", "true", "on", "1"})
FALSE_WORDS = frozenset({"no", "false", "off", "0"})

# POSIX bracket classes (guide 6.1: masks are POSIX regex) mapped to Python's ``re`` syntax.
_POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\r\n\v\f",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "cntrl": r"\x00-\x1f\x7f",
    "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e",
}
_POSIX_CLASS_RE = re.compile(r"\[:([a-z]+):\]")


def posix_to_python(pattern: str) -> str:
    """Translate the POSIX ERE features Python lacks (bracket classes) into ``re`` syntax."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in _POSIX_CLASSES:
            raise ValueError(f"unknown POSIX class [:{name}:]")
        return _POSIX_CLASSES[name]

    return _POSIX_CLASS_RE.sub(repl, pattern)


def compile_posix(pattern: str) -> re.Pattern[str]:
    """Compile a POSIX extended regular expression, case-insensitively.

    Matching is a search like ``regexec(3)`` (the guide's own ``.*\\.exe$`` anchors itself), and
    case-insensitive because mail domains and attachment names are.
    """
    try:
        return re.compile(posix_to_python(pattern), re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None


def split_list(raw: str) -> list[str]:
    """Split a comma list, keeping commas that belong to a regex (``{1,3}``, ``[,;]``, ``\\,``)."""
    items: list[str] = []
    buf: list[str] = []
    depth_brace = 0
    in_bracket = False
    escaped = False
    for ch in raw:
        if escaped:
            buf.append(ch)
            escaped = False
            continue
        if ch == "\\":
            buf.append(ch)
            escaped = True
            continue
        if in_bracket:
            in_bracket = ch != "]"
            buf.append(ch)
            continue
        if ch == "[":
            in_bracket = True
        elif ch == "{":
            depth_brace += 1
        elif ch == "}" and depth_brace:
            depth_brace -= 1
        elif ch == "," and not depth_brace:
            items.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    items.append("".join(buf).strip())
    return [item for item in items if item]


@dataclass(frozen=True)
class ValueType:
    """Base: a string kept as written."""

    name: str = "string"
    #: whether the key may be repeated / hold a comma list
    is_list: bool = False

    def parse(self, raw: str) -> Any:
        return raw

    def format(self, value: Any) -> str:
        return str(value)

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class String(ValueType):
    name: str = "string"
    allow_crlf: bool = False

    def parse(self, raw: str) -> str:
        if not self.allow_crlf and ("\r" in raw or "\n" in raw):
            raise ValueError("line breaks are not allowed in this value")
        return raw


@dataclass(frozen=True)
class Bool(ValueType):
    name: str = "boolean"

    def parse(self, raw: str) -> bool:
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"{raw!r} is not a boolean (use yes or no)")

    def format(self, value: Any) -> str:
        if isinstance(value, str):
            value = self.parse(value)
        return "yes" if value else "no"

    def describe(self) -> str:
        return "yes|no"


@dataclass(frozen=True)
class Int(ValueType):
    name: str = "integer"
    minimum: int | None = None
    maximum: int | None = None

    def parse(self, raw: str) -> int:
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{value} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{value} is above the maximum {self.maximum}")
        return value

    def describe(self) -> str:
        lo = "" if self.minimum is None else str(self.minimum)
        hi = "" if self.maximum is None else str(self.maximum)
        return f"integer {lo}..{hi}" if (lo or hi) else "integer"


@dataclass(frozen=True)
class Float(ValueType):
    name: str = "number"
    minimum: float | None = None

    def parse(self, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{value} is below the minimum {self.minimum}")
        return value

    def format(self, value: Any) -> str:
        value = float(value)
        return str(int(value)) if value.is_integer() else str(value)


@dataclass(frozen=True)
class Octal(ValueType):
    """File permission written in octal, as ``chmod`` takes it (guide 5.2.1 ``0660``, 6.4 ``0666``)."""

    name: str = "octal permission"

    def parse(self, raw: str) -> int:
        text = raw.strip()
        if not re.fullmatch(r"0?[0-7]{3,4}", text):
            raise ValueError(f"{raw!r} is not an octal permission such as 0640")
        value = int(text, 8)
        if value > 0o7777:
            raise ValueError(f"{raw!r} is not an octal permission such as 0640")
        return value

    def format(self, value: Any) -> str:
        if isinstance(value, str):
            value = self.parse(value)
        return f"{value:04o}"

    def describe(self) -> str:
        return "octal, e.g. 0640"


@dataclass(frozen=True)
class Choice(ValueType):
    name: str = "choice"
    choices: tuple[str, ...] = ()

    def parse(self, raw: str) -> str:
        word = raw.strip()
        for choice in self.choices:
            if word.lower() == choice.lower():
                return choice
        raise ValueError(f"{raw!r} is not one of {', '.join(self.choices)}")

    def describe(self) -> str:
        return "|".join(self.choices)


@dataclass(frozen=True)
class Path(ValueType):
    """An absolute path; empty means "not set" where ``optional``."""

    name: str = "path"
    optional: bool = False

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if not text:
            if self.optional:
                return ""
            raise ValueError("a path is required")
        if "\n" in text or "\r" in text or "\0" in text:
            raise ValueError("line breaks are not allowed in a path")
        if not text.startswith("/"):
            raise ValueError(f"{text!r} is not an absolute path")
        return text

    def describe(self) -> str:
        return "absolute path" + (" or empty" if self.optional else "")


@dataclass(frozen=True)
class StrList(ValueType):
    """Comma list or repeated key, order kept (format notes "Lexical form")."""

    name: str = "list"
    is_list: bool = True

    def parse(self, raw: str) -> list[str]:
        return split_list(raw)

    def format(self, value: Any) -> str:
        return ",".join(value) if isinstance(value, list | tuple) else str(value)


@dataclass(frozen=True)
class RegexList(StrList):
    """POSIX regex masks (Senders, Recipients, LicenseDomains, FilterByName: guide 5.4.1, 6.1.1)."""

    name: str = "regex list"

    def parse(self, raw: str) -> list[str]:
        items = split_list(raw)
        for item in items:
            compile_posix(item)
        return items

    def describe(self) -> str:
        return "comma list of POSIX regexes"


_ADDRESS_RE = re.compile(r"^[^@\s<>(),;:\"]+(@[^@\s<>(),;:\"]+)?$")


@dataclass(frozen=True)
class Address(ValueType):
    """A mail address; CR/LF or angle brackets would let a value inject headers into notices."""

    name: str = "address"

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if not _ADDRESS_RE.match(text):
            raise ValueError(f"{raw!r} is not a mail address")
        return text


_MAILER_RE = re.compile(
    r"^(?P<proto>smtp|lmtp|qmail)\s*:\s*(?:\((?P<cmd>[^)]*)\)|(?P<host>\[[^\]]+\]|[^:\s]+)(?::(?P<port>\d+))?)$",
    re.IGNORECASE,
)


class MailerSpec(str):
    """A parsed ``ForwardMailer`` (guide 4.4.5): the text as written (so the configuration writes
    it back and compares as the admin typed it) plus the fields the filter connects with.

    ``proto`` is ``smtp``/``lmtp``/``qmail``; either ``host``/``port`` (TCP) or ``argv`` (a program
    spoken to over its stdin/stdout, or the original qmail-queue) is set.
    """

    proto: str
    host: str | None
    port: int | None
    argv: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str) -> MailerSpec:
        import shlex

        text = " ".join(raw.split())
        m = _MAILER_RE.match(text)
        if not m:
            raise ValueError(
                f"{raw!r} is not protocol:host:port or protocol:(command) "
                "(e.g. smtp:127.0.0.1:10026 or smtp:(/usr/sbin/sendmail -bs))"
            )
        spec = cls(text)
        spec.proto = m.group("proto").lower()
        spec.host, spec.port, spec.argv = None, None, ()
        if m.group("cmd") is not None:
            if not m.group("cmd").strip():
                raise ValueError("the command in parentheses is empty")
            spec.argv = tuple(shlex.split(m.group("cmd")))
            return spec
        if spec.proto == "qmail":
            raise ValueError("qmail takes a program: qmail:(/var/qmail/bin/qmail-queue)")
        port = m.group("port")
        if port is not None and not 0 < int(port) < 65536:
            raise ValueError(f"port {port} is out of range")
        spec.host = m.group("host").strip("[]")
        spec.port = int(port or (25 if spec.proto == "smtp" else 24))
        return spec

    @property
    def canonical(self) -> str:
        """One spelling for logs: ``proto:(argv)`` or ``proto:host:port``."""
        if self.argv:
            return f"{self.proto}:({' '.join(self.argv)})"
        return f"{self.proto}:{self.host}:{self.port}"


@dataclass(frozen=True)
class Mailer(ValueType):
    """``protocol:host:port`` or ``protocol:(command)`` (guide 4.4.5); ``qmail:(path)``."""

    name: str = "mailer"

    def parse(self, raw: str) -> MailerSpec:
        return MailerSpec.parse(raw)

    def describe(self) -> str:
        return "smtp|lmtp:host[:port] or smtp|lmtp|qmail:(command)"


_LISTEN_RE = re.compile(
    r"^(?:(?P<unix>unix):(?P<path>/\S+)|(?P<inet>inet):(?P<host>\[[^\]]+\]|[^:\s]+):(?P<port>\d+)|(?P<stdio>stdio))$",
    re.IGNORECASE,
)


class ListenAddress(str):
    """A parsed ``ListenAddress``: the text as written plus ``kind`` (``inet``, ``unix`` or
    ``stdio``) and ``host``/``port`` or ``path``."""

    kind: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, raw: str) -> ListenAddress:
        text = raw.strip()
        m = _LISTEN_RE.match(text)
        if not m:
            raise ValueError(f"{raw!r} is not inet:host:port, unix:/path or stdio")
        if m.group("port") is not None and not 0 < int(m.group("port")) < 65536:
            raise ValueError(f"port {m.group('port')} is out of range")
        addr = cls(text)
        addr.host, addr.port, addr.path = "", 0, ""
        if m.group("unix"):
            addr.kind, addr.path = "unix", m.group("path")
        elif m.group("inet"):
            addr.kind, addr.host, addr.port = "inet", m.group("host").strip("[]"), int(m.group("port"))
        else:
            addr.kind = "stdio"
        return addr


@dataclass(frozen=True)
class Listen(ValueType):
    """Where smtpscanner accepts mail: ``inet:host:port``, ``unix:/path`` or ``stdio`` (spawned)."""

    name: str = "listen address"

    def parse(self, raw: str) -> ListenAddress:
        return ListenAddress.parse(raw)

    def describe(self) -> str:
        return "inet:host:port | unix:/path | stdio"


XFORWARD_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")


@dataclass(frozen=True)
class XforwardAttrs(ValueType):
    """Space list of XFORWARD attribute names (guide 6.6.3: ``NAME ADDR PROTO HELO``)."""

    name: str = "XFORWARD attributes"

    def parse(self, raw: str) -> list[str]:
        attrs = raw.replace(",", " ").split()
        bad = [a for a in attrs if a.upper() not in XFORWARD_ATTRS]
        if bad:
            raise ValueError(f"unknown XFORWARD attribute(s) {' '.join(bad)}; known: {' '.join(XFORWARD_ATTRS)}")
        return [a.upper() for a in attrs]

    def format(self, value: Any) -> str:
        return " ".join(value) if isinstance(value, list | tuple) else str(value)


_ACTION_VERBS = ("report", "cure", "remove", "move", "movepath", "quarantine", "exec")


@dataclass(frozen=True)
class ScanAction(ValueType):
    """kavscanner object actions (guide 5.3.3-5.3.4, 6.2.3): ``report``, ``cure``, ``remove``,
    ``move DIR``, ``movePath DIR``, ``quarantine [DIR]``, ``exec CMD``, several joined with ``;``.

    A ``;`` followed by something that is not a verb continues the previous ``exec`` command, as
    in the guide's own ``exec mv ...; chmod -x ...`` example.
    """

    name: str = "scanner action"

    def parse(self, raw: str) -> list[tuple[str, str]]:
        text = raw.strip()
        if not text:
            return []
        actions: list[tuple[str, str]] = []
        for piece in text.split(";"):
            piece = piece.strip()
            if not piece:
                continue
            verb, _, arg = piece.partition(" ")
            if verb.lower() in _ACTION_VERBS:
                actions.append((verb.lower(), arg.strip()))
            elif actions and actions[-1][0] == "exec":
                actions[-1] = ("exec", actions[-1][1] + "; " + piece)
            else:
                raise ValueError(f"unknown action {verb!r} (use report, cure, remove, move DIR, movePath DIR, "
                                 "quarantine [DIR] or exec CMD)")
        for verb, arg in actions:
            if verb in ("move", "movepath") and not arg.startswith("/"):
                raise ValueError(f"{verb} needs an absolute directory, got {arg!r}")
            if verb == "exec" and not arg:
                raise ValueError("exec needs a command")
            if verb in ("remove", "report", "cure") and arg:
                raise ValueError(f"{verb} takes no argument, got {arg!r}")
            if verb == "quarantine" and arg and not arg.startswith("/"):
                raise ValueError(f"quarantine needs an absolute directory, got {arg!r}")
        return actions

    def format(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        names = {"report": "report", "cure": "cure", "remove": "remove", "move": "move", "movepath": "movePath",
                 "quarantine": "quarantine", "exec": "exec"}
        return "; ".join((names[v] + (" " + a if a else "")) for v, a in value)

    def describe(self) -> str:
        return "report | cure | remove | move DIR | movePath DIR | quarantine [DIR] | exec CMD, joined with ;"


@dataclass(frozen=True)
class GroupAction(Choice):
    """6.1.3: what to do with an object in the recipient's or administrator's copy."""

    name: str = "action"
    choices: tuple[str, ...] = ("remove", "unchanged", "cured")


#: Our extension beyond the guide (issue 19 item 4): block the recipient copy, not only clean it.
BLOCKING_ACTIONS = ("discard", "reject")


@dataclass(frozen=True)
class RecipientAction(Choice):
    """6.1.3's actions for the recipient's copy plus two of our own: ``discard`` (the recipient gets
    no copy, only the notice; the original is kept by quarantine or the admin copy) and ``reject``
    (a before-queue SMTP filter answers 5xx at the end of DATA).  Cross-checked in model.py."""

    name: str = "action"
    choices: tuple[str, ...] = ("remove", "unchanged", "cured", *BLOCKING_ACTIONS)


@dataclass(frozen=True)
class Strftime(ValueType):
    """A C ``strftime`` format (guide 6.7)."""

    name: str = "strftime format"

    def parse(self, raw: str) -> str:
        import time

        if "\n" in raw or "\r" in raw:
            raise ValueError("line breaks are not allowed in a date/time format")
        try:
            time.strftime(raw, time.localtime(0))
        except ValueError as exc:
            raise ValueError(f"{raw!r} is not a strftime format: {exc}") from None
        return raw
