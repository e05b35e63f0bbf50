"""The package's ownership table (docs/security.md), checked on the installed tree (issue 11 item 1).

docs/security.md is the one place the table lives: this module parses its Markdown table and checks,
inside the sandbox after `dpkg -i` (and kavsetup's integration):

* every row whose path exists has the kind, owner, group and mode the table says (a row whose
  path is not marked "(if ...)" in the Written-by column must exist);
* every path the package or kavsetup created is covered by a row: dpkg's file list, everything
  under the product's own trees, and each path kavsetup's journal records as created (absent
  before). A path nobody wrote down is a failure, so the table cannot silently go stale;
* no directory root-run code trusts (the journal's, /etc/kav, the state tree) is writable by an
  account other than root.

Patterns: ``*`` matches within one path component, ``**`` across components.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .sandbox import Sandbox

DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"
PACKAGE = "kav4mailservers"
#: Our own trees: everything in them must be in the table.
OWN_TREES = ("/etc/kav", "/var/lib/kav", "/var/log/kav", "/opt/kav", "/usr/lib/kav4mailservers")
JOURNAL = "/var/lib/kav/5.5/kav4mailservers/journal/journal.json"
#: Directories root-run kavsetup trusts: root-owned, writable by nobody else.
ROOT_TRUSTED = ("/etc/kav/5.5/kav4mailservers", "/var/lib/kav/5.5/kav4mailservers",
                "/var/lib/kav/5.5/kav4mailservers/journal", "/var/lib/kav/5.5/kav4mailservers/journal/blobs")
KINDS = {"dir": stat.S_ISDIR, "file": stat.S_ISREG, "link": stat.S_ISLNK}


@dataclass(frozen=True)
class Row:
    pattern: str
    kind: str
    owner: str
    group: str
    mode: str  # "0750", or "-" for links and modes the admin chooses
    writer: str
    reader: str

    @property
    def optional(self) -> bool:
        return "(if " in self.writer or "*" in self.pattern

    def matches(self, path: str, kind: str) -> bool:
        return kind == self.kind and re.fullmatch(_glob(self.pattern), path) is not None


def _glob(pattern: str) -> str:
    out = []
    for part in re.split(r"(\*\*|\*)", pattern):
        out.append(".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part))
    return "".join(out)


def load(doc: Path = DOC) -> list[Row]:
    """The rows of the table under the "Ownership table" heading."""
    rows: list[Row] = []
    text = doc.read_text()
    section = text.split("## Ownership table", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not cells[0].startswith("`"):
            continue
        rows.append(Row(cells[0].strip("`"), *cells[1:]))  # type: ignore[arg-type]
    if not rows:
        raise AssertionError(f"{doc}: no ownership table rows under '## Ownership table'")
    return rows


def _kind(st: object) -> str:
    mode = st.st_mode  # type: ignore[attr-defined]
    return next((k for k, f in KINDS.items() if f(mode)), "other")


def _name(db: str, sb: Sandbox, ident: int) -> str:
    path = sb.path("/etc/passwd" if db == "passwd" else "/etc/group")
    for line in path.read_text().splitlines():
        f = line.split(":")
        if len(f) > 2 and f[2] == str(ident):
            return f[0]
    return str(ident)


def _created_paths(sb: Sandbox) -> set[str]:
    out: set[str] = set()
    r = sb.run(["dpkg-query", "-L", PACKAGE])
    out.update(p for p in r.stdout.splitlines() if p.startswith("/") and p not in ("/", "/."))
    for tree in OWN_TREES:
        base = sb.path(tree)
        if base.exists() or base.is_symlink():
            out.add(tree)
            out.update("/" + str(p.relative_to(sb.root)) for p in base.rglob("*"))
    journal = sb.path(JOURNAL)
    if journal.exists():
        for step in json.loads(journal.read_text()).get("steps", []):
            for ch in step.get("changes", []):
                if ch["before"]["kind"] == "absent":
                    out.add(ch["path"])
    # the parents dpkg lists are the system's (/usr, /etc...): only paths below something of ours count
    return {p for p in out if not _system_dir(p)}


_SYSTEM = re.compile(r"^/(etc|etc/init\.d|etc/rc\d\.d|lib|lib/systemd|lib/systemd/system|opt|usr|usr/lib|usr/sbin|"
                     r"usr/share|usr/share/doc|usr/share/man|usr/share/man/man8|usr/share/lintian|"
                     r"usr/share/lintian/overrides|var|var/lib|var/log|var/db|var/spool|etc/systemd|"
                     r"etc/systemd/system)$")


def _system_dir(path: str) -> bool:
    return _SYSTEM.match(path) is not None


def check(sb: Sandbox, rows: list[Row] | None = None) -> str:
    rows = rows if rows is not None else load()
    problems: list[str] = []
    seen = 0
    for path in sorted(_created_paths(sb)):
        host = sb.path(path)
        try:
            st = host.lstat()
        except FileNotFoundError:
            continue
        kind = _kind(st)
        owner, group = _name("passwd", sb, st.st_uid), _name("group", sb, st.st_gid)
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        candidates = [r for r in rows if r.matches(path, kind)]
        if not candidates:
            problems.append(f"{path}: {kind} {owner}:{group} {mode} is not in the ownership table ({DOC.name})")
            continue
        seen += 1
        # a path may have one row per MTA (the qmail wrapper's configuration): any of them may hold
        if not any((owner, group, mode if r.mode != "-" else "-") == (r.owner, r.group, r.mode) for r in candidates):
            said = " or ".join(f"{r.owner}:{r.group} {r.mode}" for r in candidates)
            problems.append(f"{path}: {owner}:{group} {mode}, the table says {said}")
    for row in rows:
        if not row.optional and not (sb.path(row.pattern).exists() or sb.path(row.pattern).is_symlink()):
            problems.append(f"{row.pattern}: in the ownership table but not on the installed system")
    for d in ROOT_TRUSTED:
        p = sb.path(d)
        if not p.exists():
            continue
        st = p.lstat()
        if st.st_uid != 0 or st.st_mode & 0o022 or stat.S_ISLNK(st.st_mode):
            problems.append(f"{d}: root-run kavsetup trusts it, but it is uid {st.st_uid} mode "
                            f"{stat.S_IMODE(st.st_mode):04o}")
    assert not problems, "ownership table vs the installed tree:\n" + "\n".join(problems[:60])
    return f"{seen} paths match the ownership table ({len(rows)} rows)"

