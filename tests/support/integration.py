"""Helpers for the integration tests (tests/integration): throw-away roots, tree snapshots, in-process CLI.

A test root is a small tree holding only what integration touches: the MTA's configuration and
the account files (passwd/group/shadow/gshadow with Debian's system accounts).  Snapshots cover
every entry's kind, mode, owner, symlink target and content hash, so "identical" means what
``diff -r`` plus ``stat`` would say.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from kavsetup.cli import build_parser
from kavsetup.commands.install import run_install
from kavsetup.integrate.transaction import SimulatedCrash
from tests.support.corpus import CORPUS as CORPUS

REPO = Path(__file__).resolve().parents[2]

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
postfix:x:102:105::/var/spool/postfix:/usr/sbin/nologin
Debian-exim:x:103:107::/var/spool/exim4:/usr/sbin/nologin
smmta:x:104:108:Mail Transfer Agent,,,:/var/lib/sendmail:/usr/sbin/nologin
smmsp:x:105:109:Mail Submission Program,,,:/var/lib/sendmail:/usr/sbin/nologin
alias:x:201:200::/var/qmail/alias:/usr/sbin/nologin
qmaild:x:202:200::/var/qmail:/usr/sbin/nologin
qmaill:x:203:200::/var/qmail:/usr/sbin/nologin
qmailp:x:204:200::/var/qmail:/usr/sbin/nologin
qmailq:x:205:201::/var/qmail:/usr/sbin/nologin
qmailr:x:206:201::/var/qmail:/usr/sbin/nologin
qmails:x:207:201::/var/qmail:/usr/sbin/nologin
"""
GROUP = """root:x:0:
daemon:x:1:
mail:x:8:
nogroup:x:65534:
postfix:x:105:
postdrop:x:106:
Debian-exim:x:107:
smmta:x:108:
smmsp:x:109:
nofiles:x:200:
qmail:x:201:
"""


def make_root(base: Path, files: dict[str, Path | bytes | str], *, shadow: bool = True) -> Path:
    """A root under ``base`` with the account files and ``files`` (in-system path -> source)."""
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "sbin" / "nologin").write_bytes(b"")
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    if shadow:
        sh = "".join(f"{ln.split(':')[0]}:*:19000:0:99999:7:::\n" for ln in PASSWD.splitlines())
        (root / "etc" / "shadow").write_text(sh)
        os.chmod(root / "etc" / "shadow", 0o640)
        gs = "".join(f"{ln.split(':')[0]}:*::\n" for ln in GROUP.splitlines())
        (root / "etc" / "gshadow").write_text(gs)
        os.chmod(root / "etc" / "gshadow", 0o640)
    for path, src in files.items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, Path):
            shutil.copyfile(src, dest)
        elif isinstance(src, bytes):
            dest.write_bytes(src)
        else:
            dest.write_text(src)
    return root


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("l", os.readlink(p), st.st_uid, st.st_gid)
            elif p.is_dir():
                out[rel] = ("d", st.st_mode & 0o7777, st.st_uid, st.st_gid)
            else:
                out[rel] = ("f", st.st_mode & 0o7777, st.st_uid, st.st_gid,
                            hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def diff_snapshots(a: dict[str, tuple[object, ...]], b: dict[str, tuple[object, ...]]) -> list[str]:
    return [f"{k}: {a.get(k)} != {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def kav(*argv: str, fail_after: int | None = None) -> tuple[int, str]:
    """Run ``kavsetup ARGV`` in-process; returns (exit code, stdout+stderr)."""
    buf = io.StringIO()
    args = build_parser().parse_args(list(argv))
    with redirect_stdout(buf), redirect_stderr(buf):
        if fail_after is not None:
            def crash(k: int) -> None:
                raise SimulatedCrash(k)
            try:
                code = run_install(args, fail_after=fail_after, crash=crash)
            except SimulatedCrash:
                code = -9
        else:
            code = int(args.func(args) or 0)
    return code, buf.getvalue()


def step_count(root: Path) -> int:
    import json
    doc = json.loads((root / "var/lib/kav/5.5/kav4mailservers/journal/journal.json").read_text())
    return len(doc["steps"])


def cached_root(prefix: str) -> Path | None:
    """A Debian root built by the distro-matrix helper (tests/distro-matrix), if present:
    ~/.cache/kav4ms/roots/<suite>-<mta>-<hash>/ with its .json recipe beside it."""
    base = Path(os.environ.get("KAV4MS_CACHE", Path.home() / ".cache" / "kav4ms")) / "roots"
    if not base.is_dir():
        return None
    found = [p for p in base.glob(f"{prefix}-*") if p.is_dir() and len(p.name) == len(prefix) + 17
             and (p.parent / f"{p.name}.json").exists()]
    # Newest recipe first: the builder prunes roots of older recipes once a new one is complete.
    found.sort(key=lambda p: (p.parent / f"{p.name}.json").stat().st_mtime)
    return found[-1] if found else None


class Overlay:
    """A throw-away writable copy of a cached root: overlayfs with the root as lower layer, so
    the cache is never written and the copy costs milliseconds (testing.md)."""

    def __init__(self, lower: Path, base: Path) -> None:
        self.lower = lower
        self.base = base
        self.merged = base / "merged"

    def __enter__(self) -> Path:
        import subprocess
        for d in ("upper", "work", "merged"):
            (self.base / d).mkdir(parents=True)
        opts = f"lowerdir={self.lower},upperdir={self.base / 'upper'},workdir={self.base / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.merged)], check=True)
        return self.merged

    def __exit__(self, *exc: object) -> None:
        import subprocess
        subprocess.run(["umount", str(self.merged)], check=False)


def snapshot_paths(root: Path, paths: list[str]) -> dict[str, tuple[object, ...]]:
    """Snapshot restricted to some subtrees (a whole Debian root is too big to hash per test)."""
    out: dict[str, tuple[object, ...]] = {}
    for p in paths:
        sub = root / p.lstrip("/")
        if sub.is_dir() and not sub.is_symlink():
            for k, v in snapshot(sub).items():
                out[f"{p}/{k}"] = v
        if os.path.lexists(sub):
            st = sub.lstat()
            out[p] = (st.st_mode, st.st_uid, st.st_gid,
                      hashlib.sha256(sub.read_bytes()).hexdigest() if sub.is_file() and not sub.is_symlink() else "")
        else:
            out[p] = ("absent",)
    return out


JOURNALS = REPO / "tests" / "fixtures" / "journals"


def unpack_journal_fixture(base: Path, mta: str) -> tuple[Path, Path]:
    """(before, installed) roots of tests/fixtures/journals/<mta>.tar.gz unpacked under ``base``:
    our own archive, so set-uid bits and numeric owners are kept as written."""
    import tarfile

    with tarfile.open(JOURNALS / f"{mta}.tar.gz") as tar:
        if hasattr(tarfile, "fully_trusted_filter"):  # Python >= 3.11.4: say so, as 3.14 will require
            tar.extractall(base, filter="fully_trusted")
        else:  # pragma: no cover - Debian bookworm's 3.11.2
            tar.extractall(base)  # noqa: S202 - our own fixture
    return base / "before", base / "installed"
