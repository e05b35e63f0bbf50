"""Typed Edits: each one computes, describes and reverses one change to the system.

An Edit is a small frozen value (so it can be stored in the journal and rebuilt for uninstall
years later without re-running detection).  ``compute(view)`` is pure: it reads the current
images of its paths from a ``View`` and returns ``Change``s (before, after); the transaction
writes them.  ``unapply(path, current, before)`` is the *semantic* reversal used only when the
administrator changed the file after we installed: it removes what we added (our marked block,
our parameters, our services) and keeps everything else, returning notes for anything it could
not decide (never guessing).  When a file is still exactly what we wrote, the transaction does
not call ``unapply`` at all: it restores the before-image byte for byte.

Markers follow the ucf/blockinfile convention: ``# BEGIN kav4mailservers <id>`` ...
``# END kav4mailservers <id>``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

from kavsetup import postfix_cf
from kavsetup.integrate.files import ABSENT, Image, View

MARK = "kav4mailservers"


class EditError(Exception):
    """The edit cannot be applied to what is there (one line, names the file)."""


@dataclass(frozen=True)
class Change:
    path: PurePosixPath
    before: Image
    after: Image

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """Unified diff (text files) or a one-line account (dirs, links, modes, binaries)."""
        p = str(self.path)
        b, a = self.before, self.after
        out: list[str] = []
        if b.kind != a.kind:
            out.append(f"# {p}: {_describe(b)} -> {_describe(a)}\n")
        elif (b.mode, b.uid, b.gid) != (a.mode, a.uid, a.gid):
            out.append(f"# {p}: mode {b.mode:04o} {b.uid}:{b.gid} -> {a.mode:04o} {a.uid}:{a.gid}\n")
        if b.kind == a.kind == "symlink":
            if b.target != a.target:
                out.append(f"# {p}: symlink {b.target or '-'} -> {a.target or '-'}\n")
        if b.data != a.data and (a.kind == "file" or b.kind == "file"):
            if _is_text(b.data) and _is_text(a.data):
                out.extend(difflib.unified_diff(
                    b.text().splitlines(keepends=True), a.text().splitlines(keepends=True),
                    fromfile=p if b.exists else "/dev/null", tofile=p if a.exists else "/dev/null"))
                if out and not out[-1].endswith("\n"):
                    out[-1] += "\n\\ No newline at end of file\n"
            else:
                out.append(f"# {p}: binary content {len(b.data)} -> {len(a.data)} bytes\n")
        return "".join(out)


def _describe(img: Image) -> str:
    if img.kind == "absent":
        return "absent"
    if img.kind == "symlink":
        return f"symlink to {img.target}"
    return f"{img.kind} {img.mode:04o} {img.uid}:{img.gid}"


def _is_text(data: bytes) -> bool:
    return b"\0" not in data[:8192]


@dataclass(frozen=True)
class Undo:
    """Result of a semantic reversal: the image to write (None: leave the file alone) and
    notes for the administrator (what was kept and why)."""

    image: Image | None
    notes: tuple[str, ...] = ()


# -- registry for the journal -----------------------------------------------------------------

_REGISTRY: dict[str, type[Edit]] = {}


def _tupled(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tupled(x) for x in v)
    return v


def edit_from_json(doc: dict[str, Any]) -> Edit:
    cls = _REGISTRY[doc["type"]]
    names = {f.name for f in fields(cls)}
    return cls(**{k: _tupled(v) for k, v in doc["args"].items() if k in names})


@dataclass(frozen=True)
class Edit:
    """Base class; subclasses are frozen dataclasses of JSON-able fields."""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _REGISTRY[cls.__name__] = cls

    def to_json(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "args": asdict(self)}

    def paths(self) -> tuple[PurePosixPath, ...]:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError

    def compute(self, view: View) -> list[Change]:
        raise NotImplementedError

    def unapply(self, path: PurePosixPath, current: Image, before: Image) -> Undo:
        return Undo(None, (f"{path}: changed since install; left as it is (review it)",))


def _owner(img: Image, mode: int, uid: int, gid: int) -> Image:
    return replace(img, mode=mode, uid=uid, gid=gid)


def _need_file(view: View, path: str) -> Image:
    img = view.get(path)
    if img.kind != "file":
        raise EditError(f"{path}: expected a regular file, found {_describe(img)}")
    return img


def _fix_tail(result: str, before: str) -> str:
    """If we had to add a final newline to append our lines, take it away again."""
    if before and not before.endswith("\n") and result.endswith("\n") and result[:-1].endswith(before[-40:]):
        return result[:-2] if result.endswith("\r\n") else result[:-1]
    return result


# -- concrete edits ----------------------------------------------------------------------------

@dataclass(frozen=True)
class WriteFile(Edit):
    """Create (or replace) a whole file we own: start-up scripts, units, the wrapper."""

    path: str
    content: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.path),)

    def summary(self) -> str:
        return f"write {self.path} ({self.mode:04o})"

    def compute(self, view: View) -> list[Change]:
        before = view.get(self.path)
        if before.kind not in ("absent", "file"):
            raise EditError(f"{self.path}: is a {before.kind}; refusing to replace it")
        after = Image("file", self.content.encode("utf-8", "surrogateescape"), self.mode, self.uid, self.gid)
        return [Change(PurePosixPath(self.path), before, after)]


@dataclass(frozen=True)
class DeriveFile(Edit):
    """Create ``path`` from ``source``'s current content with marked blocks inserted
    (sendmail.cf.listen from sendmail.cf, exim.conf.listen from exim.conf: guide 4.4.1, 4.4.4).

    ``inserts`` are (block_id, anchor_regex, block_text): the block goes right after the first
    line matching the anchor (multiline regex on the line), or at the end for anchor "".
    ``replaces`` are (regex, replacement[, before_regex]) applied to whole lines of the copy; when
    the regex matches nothing the line is inserted before ``before_regex``'s first match."""

    path: str
    source: str
    inserts: tuple[tuple[str, str, str], ...] = ()
    replaces: tuple[tuple[str, ...], ...] = ()
    mode: int = -1
    uid: int = -1
    gid: int = -1

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.path),)

    def summary(self) -> str:
        return f"derive {self.path} from {self.source}"

    def compute(self, view: View) -> list[Change]:
        src = _need_file(view, self.source)
        text = src.text()
        for rx, repl, *fallback in self.replaces:
            text, n = re.subn(rx, lambda _m, r=repl: r, text, count=1, flags=re.M)
            if n == 0 and fallback and fallback[0]:
                # Not set in the source: put the line just before the first fallback match
                # (e.g. an Exim main option before the first "begin").
                m = re.search(fallback[0], text, flags=re.M)
                if m:
                    nl = postfix_cf.newline_of(text)
                    text = text[:m.start()] + repl + nl + text[m.start():]
                    n = 1
            if n == 0:
                raise EditError(f"{self.source}: no line matches {rx!r}")
        for block_id, anchor, block in self.inserts:
            text = insert_block(text, block_id, block, anchor, "#", self.source)
        before = view.get(self.path)
        if before.kind not in ("absent", "file"):
            raise EditError(f"{self.path}: is a {before.kind}; refusing to replace it")
        after = Image("file", text.encode("utf-8", "surrogateescape"),
                      src.mode if self.mode < 0 else self.mode,
                      src.uid if self.uid < 0 else self.uid,
                      src.gid if self.gid < 0 else self.gid)
        return [Change(PurePosixPath(self.path), before, after)]


def _markers(block_id: str, comment: str) -> tuple[str, str]:
    return f"{comment} BEGIN {MARK} {block_id}", f"{comment} END {MARK} {block_id}"


def find_block(text: str, block_id: str, comment: str = "#") -> tuple[int, int] | None:
    """Line span (start, end-exclusive) of our marked block, markers included."""
    begin, end = _markers(block_id, comment)
    lines = postfix_cf.split_lines(text)
    start = None
    for i, line in enumerate(lines):
        s = line.rstrip("\r\n")
        if s == begin and start is None:
            start = i
        elif s == end and start is not None:
            return start, i + 1
    return None


def insert_block(text: str, block_id: str, block: str, anchor: str, comment: str, where: str) -> str:
    nl = postfix_cf.newline_of(text)
    begin, end = _markers(block_id, comment)
    body = [ln + nl for ln in block.rstrip("\n").split("\n")] if block else []
    new = [begin + nl, *body, end + nl]
    span = find_block(text, block_id, comment)
    lines = postfix_cf.split_lines(text)
    if span is not None:
        return "".join(lines[:span[0]] + new + lines[span[1]:])
    if not anchor:
        if text and not text.endswith("\n"):
            text += nl
        return text + "".join(new)
    rx = re.compile(anchor)
    for i, line in enumerate(lines):
        if rx.search(line.rstrip("\r\n")):
            if not line.endswith("\n"):
                lines[i] = line + nl
            return "".join(lines[: i + 1] + new + lines[i + 1:])
    raise EditError(f"{where}: no line matches {anchor!r}; cannot place the {block_id} block")


@dataclass(frozen=True)
class InsertBlock(Edit):
    """A marked block in someone else's text file (/etc/exim4/trusted_configs, rc scripts)."""

    path: str
    block_id: str
    block: str
    anchor: str = ""
    comment: str = "#"
    create_mode: int = 0o644
    create_uid: int = 0
    create_gid: int = 0

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.path),)

    def summary(self) -> str:
        return f"insert block {self.block_id!r} into {self.path}"

    def compute(self, view: View) -> list[Change]:
        before = view.get(self.path)
        if before.kind == "absent":
            base = Image("file", b"", self.create_mode, self.create_uid, self.create_gid)
        else:
            base = _need_file(view, self.path)
        text = insert_block(base.text(), self.block_id, self.block, self.anchor, self.comment, self.path)
        return [Change(PurePosixPath(self.path), before, base.with_text(text))]

    def unapply(self, path: PurePosixPath, current: Image, before: Image) -> Undo:
        if current.kind != "file":
            return Undo(None, (f"{path}: gone or replaced since install; nothing to remove",))
        text = current.text()
        span = find_block(text, self.block_id, self.comment)
        if span is None:
            return Undo(None, (f"{path}: our {self.block_id!r} block markers are gone; left as it is",))
        lines = postfix_cf.split_lines(text)
        result = _fix_tail("".join(lines[:span[0]] + lines[span[1]:]), before.text())
        if before.kind == "absent" and result == "":
            return Undo(ABSENT)
        return Undo(current.with_text(result))


@dataclass(frozen=True)
class SetParams(Edit):
    """Postfix main.cf parameters, ``postconf -e`` style (guide 4.4.3 step 1)."""

    path: str
    params: tuple[tuple[str, str], ...]

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.path),)

    def summary(self) -> str:
        return f"set {', '.join(k for k, _ in self.params)} in {self.path}"

    def compute(self, view: View) -> list[Change]:
        before = _need_file(view, self.path)
        text = before.text()
        for name, value in self.params:
            text = postfix_cf.set_param(text, name, value)
        return [Change(PurePosixPath(self.path), before, before.with_text(text))]

    def unapply(self, path: PurePosixPath, current: Image, before: Image) -> Undo:
        if current.kind != "file":
            return Undo(None, (f"{path}: gone since install; nothing to undo",))
        text, btext = current.text(), before.text()
        notes: list[str] = []
        for name, ours in reversed(self.params):
            e = postfix_cf.last_param(text, name)
            if e is None:
                notes.append(f"{path}: {name} was removed since install; nothing to undo")
                continue
            if e.value != ours:
                notes.append(f"{path}: {name} was changed since install to {e.value!r}; kept")
                continue
            old = postfix_cf.last_param(btext, name)
            if old is None:
                text = postfix_cf.remove_span(text, e)
            else:
                text = postfix_cf.restore_span(text, e, postfix_cf.span_text(btext, old))
        return Undo(current.with_text(_fix_tail(text, btext)), tuple(notes))


@dataclass(frozen=True)
class MasterServices(Edit):
    """Add (or replace) master.cf services by ``name/type`` key (``postconf -M`` semantics).

    ``services`` are (key, text) where text is the full service entry, continuation lines
    included."""

    path: str
    services: tuple[tuple[str, str], ...]

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.path),)

    def summary(self) -> str:
        return f"add master.cf services {', '.join(k for k, _ in self.services)} to {self.path}"

    def compute(self, view: View) -> list[Change]:
        before = _need_file(view, self.path)
        text = before.text()
        nl = postfix_cf.newline_of(text)
        for key, entry in self.services:
            lines = [ln + nl for ln in entry.rstrip("\n").split("\n")]
            e = postfix_cf.find_service(text, key)
            if e is None:
                if text and not text.endswith("\n"):
                    text += nl
                text += "".join(lines)
            elif postfix_cf.span_text(text, e) != "".join(lines):
                text = postfix_cf.restore_span(text, e, "".join(lines))
        return [Change(PurePosixPath(self.path), before, before.with_text(text))]

    def unapply(self, path: PurePosixPath, current: Image, before: Image) -> Undo:
        if current.kind != "file":
            return Undo(None, (f"{path}: gone since install; nothing to undo",))
        text, btext = current.text(), before.text()
        nl = postfix_cf.newline_of(text)
        notes: list[str] = []
        for key, entry in reversed(self.services):
            ours = "".join(ln + nl for ln in entry.rstrip("\n").split("\n"))
            e = postfix_cf.find_service(text, key)
            if e is None:
                notes.append(f"{path}: service {key} was removed since install; nothing to undo")
                continue
            if postfix_cf.span_text(text, e) != ours:
                notes.append(f"{path}: service {key} was changed since install; kept")
                continue
            old = postfix_cf.find_service(btext, key)
            if old is None:
                text = postfix_cf.remove_span(text, e)
            else:
                text = postfix_cf.restore_span(text, e, postfix_cf.span_text(btext, old))
        return Undo(current.with_text(_fix_tail(text, btext)), tuple(notes))


def ini_set(text: str, section: str, key: str, value: str) -> str:
    """Set one key through the configuration editor, so the value is validated against the
    schema and aliases, repeated keys and line endings are handled exactly as
    ``kavsetup config set`` handles them."""
    from runtime.config.editor import apply_assignments, normalise  # see IniValues.unapply

    return apply_assignments(text, [normalise(section, key, value)])


@dataclass(frozen=True)
class IniValues(Edit):
    """Keys of kav4mailservers.conf (guide 4.4.5, 6.1.1).  When the file does not exist it is
    created from ``default_text`` (the schema's commented defaults) first."""

    path: str
    values: tuple[tuple[str, str, str], ...]
    default_text: str = ""
    mode: int = 0o640
    uid: int = 0
    gid: int = 0

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.path),)

    def summary(self) -> str:
        return f"set {', '.join(f'[{s}] {k}' for s, k, _ in self.values)} in {self.path}"

    def compute(self, view: View) -> list[Change]:
        before = view.get(self.path)
        base = (Image("file", self.default_text.encode(), self.mode, self.uid, self.gid)
                if before.kind == "absent" else _need_file(view, self.path))
        text = base.text()
        for section, key, value in self.values:
            text = ini_set(text, section, key, value)
        return [Change(PurePosixPath(self.path), before, base.with_text(text))]

    def unapply(self, path: PurePosixPath, current: Image, before: Image) -> Undo:
        if before.kind == "absent":
            return Undo(None, (f"{path}: our configuration file was edited since install; "
                               "kept (delete it yourself if no longer wanted)",))
        if current.kind != "file":
            return Undo(None, (f"{path}: gone since install; nothing to undo",))
        # Imported on use: loading the schema costs ~0.1 s, and a journal whose files are still
        # as we wrote them is reversed byte for byte without it.
        from runtime.config import editor

        text, btext = current.text(), before.text()
        notes: list[str] = []
        for section, key, ours in reversed(self.values):
            # The runtime's own reader decides what the key holds now (continuations, quotes,
            # ``;`` comments, spellings), and its lines are put back whole from the before-image.
            now = editor.key_value(text, section, key)
            if now is None or now not in (ours, editor.normalise(section, key, ours).value):
                notes.append(f"{path}: [{section}] {key} changed since install; kept")
                continue
            text = editor.replace_key(text, section, key, editor.key_lines(btext, section, key))
            if not editor.has_section(btext, section):
                text = editor.drop_section_if_empty(text, section)
        return Undo(current.with_text(_fix_tail(text, btext)), tuple(notes))


@dataclass(frozen=True)
class EnsureDir(Edit):
    """A directory with owner and mode (/var/spool/filter: guide 4.4.3 steps 3-5)."""

    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    only_create: bool = False  # an existing directory is left exactly as it is
    #: A spool the MTA's second instance fills with its own runtime state (Exim: db/ hint files,
    #: input/ and msglog/).  On reversal that state goes with the directory, unless mail is still
    #: queued in it: then the directory is kept and the admin told how to flush it.
    runtime_spool: bool = False

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.path),)

    def summary(self) -> str:
        return f"directory {self.path} {self.mode:04o} {self.uid}:{self.gid}"

    def before_removal(self, host: Path) -> tuple[bool, tuple[str, ...]]:
        """Called before the directory is removed on uninstall: (may remove, notes)."""
        if not self.runtime_spool or not host.is_dir():
            return True, ()
        queued = [p for p in (host / "input").rglob("*") if p.is_file()] if (host / "input").is_dir() else []
        if queued:
            return False, (f"{self.path}: {len(queued)} queued file(s) not yet scanned; kept. Deliver them "
                           "first (e.g. exim -C <listen config> -qff) and remove the directory yourself",)
        for p in sorted(host.rglob("*"), key=lambda q: len(q.parts), reverse=True):
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
        return True, ()

    def compute(self, view: View) -> list[Change]:
        before = view.get(self.path)
        if before.kind not in ("absent", "dir"):
            raise EditError(f"{self.path}: exists and is not a directory")
        if self.only_create and before.kind == "dir":
            return [Change(PurePosixPath(self.path), before, before)]
        return [Change(PurePosixPath(self.path), before, Image("dir", b"", self.mode, self.uid, self.gid))]

    def unapply(self, path: PurePosixPath, current: Image, before: Image) -> Undo:
        if before.kind == "dir" and current.kind == "dir":
            return Undo(None, (f"{path}: owner or mode changed since install; kept",))
        return Undo(None, (f"{path}: changed since install; left as it is",))


@dataclass(frozen=True)
class AccountLine(Edit):
    """One line of /etc/passwd, /etc/group, /etc/shadow or /etc/gshadow for an account we
    create (kluser, filter: guide 4.4.3 step 4).  Done by editing the root's files, not with
    useradd, so it works in any --root and reverses byte for byte."""

    path: str
    name: str
    line: str
    if_exists: bool = True  # /etc/shadow and /etc/gshadow are optional in a root

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.path),)

    def summary(self) -> str:
        return f"account {self.name} in {self.path}"

    def compute(self, view: View) -> list[Change]:
        if self.if_exists and view.get(self.path).kind == "absent":
            return [Change(PurePosixPath(self.path), ABSENT, ABSENT)]
        before = _need_file(view, self.path)
        text = before.text()
        if any(ln.split(":", 1)[0] == self.name for ln in text.splitlines()):
            return [Change(PurePosixPath(self.path), before, before)]
        if text and not text.endswith("\n"):
            text += "\n"
        return [Change(PurePosixPath(self.path), before, before.with_text(text + self.line + "\n"))]

    def unapply(self, path: PurePosixPath, current: Image, before: Image) -> Undo:
        if current.kind != "file":
            return Undo(None, (f"{path}: gone since install",))
        lines = postfix_cf.split_lines(current.text())
        keep = [ln for ln in lines if ln.rstrip("\n") != self.line]
        if len(keep) == len(lines):
            if any(ln.split(":", 1)[0] == self.name for ln in lines):
                return Undo(None, (f"{path}: account {self.name} was modified since install; kept",))
            return Undo(None)
        return Undo(current.with_text(_fix_tail("".join(keep), before.text())))


@dataclass(frozen=True)
class SwapIn(Edit):
    """Move ``path`` aside to ``aside`` and put ``content`` in its place (qmail-queue ->
    queue.kav55 + our wrapper: guide 4.4.2).  ``aside`` gets the original bytes with
    ``aside_mode`` and the owner; ``path`` gets the wrapper.  Written aside first, then the
    wrapper by rename over ``path``, so ``path`` is never missing."""

    path: str
    aside: str
    content: str
    mode: int
    aside_mode: int
    uid: int
    gid: int
    marker: str = MARK

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.aside), PurePosixPath(self.path))

    def summary(self) -> str:
        return f"rename {self.path} -> {self.aside} and install the wrapper in its place"

    def compute(self, view: View) -> list[Change]:
        orig = _need_file(view, self.path)
        aside_before = view.get(self.aside)
        if self.marker.encode() in orig.data:
            raise EditError(f"{self.path}: is already a {self.marker} wrapper")
        if aside_before.exists:
            raise EditError(f"{self.aside}: already exists (qmail already wrapped?); refusing")
        uid = orig.uid if self.uid < 0 else self.uid
        gid = orig.gid if self.gid < 0 else self.gid
        aside = Image("file", orig.data, self.aside_mode, uid, gid)
        wrapper = Image("file", self.content.encode(), self.mode, uid, gid)
        return [Change(PurePosixPath(self.aside), aside_before, aside),
                Change(PurePosixPath(self.path), orig, wrapper)]


@dataclass(frozen=True)
class Symlink(Edit):
    path: str
    target: str

    def paths(self) -> tuple[PurePosixPath, ...]:
        return (PurePosixPath(self.path),)

    def summary(self) -> str:
        return f"symlink {self.path} -> {self.target}"

    def compute(self, view: View) -> list[Change]:
        before = view.get(self.path)
        if before.kind not in ("absent", "symlink"):
            raise EditError(f"{self.path}: exists and is not a symlink; refusing")
        return [Change(PurePosixPath(self.path), before, Image("symlink", mode=0o777, target=self.target))]


@dataclass(frozen=True)
class Plan:
    """What compile_plan() returns: the ordered edits plus what the installer should tell the admin
    (chosen ports, decisions, warnings).  Nothing is written until a Transaction applies it."""

    mta: str
    edits: tuple[Edit, ...]
    notes: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    #: daemons to start (and answer) once the files are written, before the MTA is reloaded:
    #: (name, address), see kavsetup/services.py
    services: tuple[tuple[str, str], ...] = ()

    def changes(self, view: View) -> list[tuple[Edit, list[Change]]]:
        out = []
        for e in self.edits:
            chs = e.compute(view)
            for c in chs:
                view.set(c.path, c.after)
            out.append((e, chs))
        return out

    def preview(self, view: View) -> tuple[list[str], str]:
        """(summaries of the edits that change something, one unified diff per path: first
        before-image against last after-image) — what ``--dry-run`` prints."""
        first: dict[PurePosixPath, Image] = {}
        last: dict[PurePosixPath, Image] = {}
        summaries: list[str] = []
        for e, chs in self.changes(view):
            if any(c.changed for c in chs):
                summaries.append(e.summary())
            for c in chs:
                first.setdefault(c.path, c.before)
                last[c.path] = c.after
        summaries += [f"start {name} and wait until it answers on {address}, before the MTA is reloaded"
                      for name, address in self.services]
        return summaries, "".join(Change(p, first[p], last[p]).diff() for p in first if first[p] != last[p])

    def diff(self, view: View) -> str:
        return self.preview(view)[1]
