"""Build a fixture system root from ``tests/fixtures/roots/<name>/`` into a scratch directory.

A fixture directory holds the identity and MTA files of one system, as plain files, plus a
``FIXTURE`` manifest for what git cannot or should not hold.  Directives, one a line
(``#`` comments; paths are in-system, absolute):

``deb PACKAGE [SUITE]``      unpack the real Debian package (tests/support/debian_pkgs.py) and
                             record it in var/lib/dpkg — done first, before the plain files
``copy SRC DST``             copy a file inside the root (what a postinst does, e.g. Postfix's
                             ``main.cf.debian`` -> ``/etc/postfix/main.cf``)
``m4 MC CF``                 generate CF from MC with the root's own sendmail-cf macros
                             (Debian's ``sendmailconfig`` step), include paths mapped into the root
``link PATH TARGET``         a symlink (absolute targets are kept absolute: they mean the root's /)
``dir PATH``                 an empty directory
``own PATH USER GROUP MODE`` owner (names from the root's etc/passwd, etc/group) and octal mode
``rpmdb DB NAME VERSION RELEASE [FILE...]``  a package in an rpm sqlite database at DB
``pkgng ORIGIN NAME VERSION [FILE...]``      a package in FreeBSD's var/db/pkg/local.sqlite
``unreadable PATH``          make PATH unreadable even for root: replaced by a directory
                             (open() fails with EISDIR); see tests/fixtures/roots/README.md

Symlinks live in the manifest rather than in git because absolute links such as
``usr/sbin/sendmail -> /etc/alternatives/mta`` would point into the *host* from the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support import debian_pkgs, pkgdb

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "roots"


def names() -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "FIXTURE").is_file())


def _inside(root: Path, path: str) -> Path:
    if not path.startswith("/"):
        raise ValueError(f"fixture path must be absolute: {path}")
    return root / path.lstrip("/")


def _ids(root: Path, file: str) -> dict[str, int]:
    ids = {}
    db = root / "etc" / file
    for line in db.read_text().splitlines() if db.exists() else []:
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            ids[parts[0]] = int(parts[2])
    return ids


def _m4(root: Path, mc: str, cf: str) -> None:
    text = _inside(root, mc).read_text()
    mapped = text.replace("/usr/share/sendmail/", f"{root}/usr/share/sendmail/").replace(
        "/etc/mail/m4/", f"{root}/etc/mail/m4/")
    out = subprocess.run(["m4"], input=mapped, capture_output=True, text=True, check=True).stdout
    _inside(root, cf).write_text(out.replace(f"{root}/", "/"))


def build(name: str, dest: Path) -> Path:
    """Materialise fixture ``name`` under ``dest`` (created) and return ``dest``."""
    source = FIXTURES / name
    manifest = [line.split() for line in (source / "FIXTURE").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    dest.mkdir(parents=True, exist_ok=True)
    for words in manifest:
        if words[0] == "deb":
            debian_pkgs.install_into(dest, words[1], words[2] if len(words) > 2 else None)
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True,
                    ignore=lambda d, entries: ["FIXTURE"] if Path(d) == source else [])
    rpms: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {}
    pkgs: list[tuple[str, str, str, tuple[str, ...]]] = []
    owners: list[list[str]] = []
    for words in manifest:
        op, args = words[0], words[1:]
        if op == "deb":
            continue
        if op == "copy":
            target = _inside(dest, args[1])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_inside(dest, args[0]), target)
        elif op == "m4":
            _m4(dest, args[0], args[1])
        elif op == "link":
            link = _inside(dest, args[0])
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(args[1], link)
        elif op == "dir":
            _inside(dest, args[0]).mkdir(parents=True, exist_ok=True)
        elif op == "own":
            owners.append(args)
        elif op == "rpmdb":
            rpms.setdefault(args[0], []).append((args[1], args[2], args[3], tuple(args[4:])))
        elif op == "pkgng":
            pkgs.append((args[0], args[1], args[2], tuple(args[3:])))
        elif op == "unreadable":
            path = _inside(dest, args[0])
            if path.exists() or path.is_symlink():
                path.unlink()
            path.mkdir(parents=True)
        else:
            raise ValueError(f"{source / 'FIXTURE'}: unknown directive {op!r}")
    for db, entries in rpms.items():
        pkgdb.write_rpmdb(_inside(dest, db), entries)
    if pkgs:
        pkgdb.write_pkgng(dest / "var/db/pkg/local.sqlite", pkgs)
    users, groups = _ids(dest, "passwd"), _ids(dest, "group")
    for where, user, group, mode in owners:
        target = _inside(dest, where)
        os.lchown(target, users[user], groups[group])
        os.chmod(target, int(mode, 8))
    return dest
