"""The root's package database, read directly (no dpkg/rpm/pkg binary needed).

Why read it ourselves: under ``--root`` the package tools may be absent or of another OS
(a FreeBSD image on a Linux host), yet the database is a file we can parse.  Supported:
dpkg's ``var/lib/dpkg/status`` + ``info/*.list``; rpm's sqlite database (``rpmdb.sqlite``, RHEL 9,
Fedora 33+), header blobs decoded per the RPM header format; FreeBSD pkg(8)'s
``var/db/pkg/local.sqlite`` and the pre-pkgng ``var/db/pkg/<name>-<version>/+CONTENTS``.  Berkeley
DB (``Packages``, old Red Hat) and ndb (``Packages.db``, SUSE) rpm databases are recognised but
not decoded: versions then come from the MTA's own files and ``PackageDB.unreadable`` says why.
"""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import quote

from kavsetup.detect.model import PackageFormat
from kavsetup.detect.rootfs import RootFS

# RPM header tags (rpmtag.h, documented in the RPM file-format spec).
_TAG_NAME, _TAG_VERSION, _TAG_RELEASE, _TAG_EPOCH, _TAG_ARCH = 1000, 1001, 1002, 1003, 1022
_TAG_DIRINDEXES, _TAG_BASENAMES, _TAG_DIRNAMES = 1116, 1117, 1118
_RPM_INT32, _RPM_STRING, _RPM_STRING_ARRAY, _RPM_I18NSTRING = 4, 6, 8, 9

RPMDB_SQLITE = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")
RPMDB_OTHER = ("/var/lib/rpm/Packages", "/var/lib/rpm/Packages.db", "/usr/lib/sysimage/rpm/Packages.db",
               "/usr/lib/sysimage/rpm/Packages")


@dataclass(frozen=True)
class Package:
    name: str
    version: str          # upstream version with release ("3.7.11-0+deb12u1", "3.5.9-24.el9")
    upstream: str         # upstream part only ("3.7.11", "3.5.9", "1.03")
    db: str               # in-system path of the database it came from


@dataclass
class PackageDB:
    format: PackageFormat
    packages: dict[str, Package] = field(default_factory=dict)
    files: dict[str, frozenset[str]] = field(default_factory=dict)  # package -> in-system paths
    unreadable: str = ""

    def get(self, *names: str) -> Package | None:
        for name in names:
            if name in self.packages:
                return self.packages[name]
        return None

    def owner(self, path: PurePosixPath | str) -> str | None:
        target = str(path)
        for name, paths in self.files.items():
            if target in paths:
                return name
        return None


def upstream_of(version: str) -> str:
    """Strip a Debian/RPM epoch and release: "1:4.96-15+deb12u10" -> "4.96"."""
    v = version.split(":", 1)[1] if ":" in version.split("-", 1)[0] else version
    return v.rsplit("-", 1)[0] if "-" in v else v


def read_package_db(fs: RootFS) -> PackageDB:
    if fs.is_file("/var/lib/dpkg/status"):
        return _read_dpkg(fs)
    for path in RPMDB_SQLITE:
        if fs.is_file(path):
            return _read_rpm_sqlite(fs, path)
    for path in RPMDB_OTHER:
        if fs.is_file(path):
            return PackageDB(PackageFormat.RPM, unreadable=f"{path}: rpm database in Berkeley DB/ndb format "
                             "is not decoded; versions taken from files")
    if fs.is_file("/var/db/pkg/local.sqlite"):
        return _read_pkgng(fs, "/var/db/pkg/local.sqlite")
    if fs.is_dir("/var/db/pkg"):
        return _read_pkg_legacy(fs)
    return PackageDB(PackageFormat.UNKNOWN)


# -- dpkg ----------------------------------------------------------------------------------
def _read_dpkg(fs: RootFS) -> PackageDB:
    db = PackageDB(PackageFormat.DEB)
    text = fs.read_text("/var/lib/dpkg/status") or ""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and line[0] not in " \t" and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        name, status = fields.get("Package"), fields.get("Status", "")
        if name and status.endswith(" installed") and "Version" in fields:
            db.packages[name] = Package(name, fields["Version"], upstream_of(fields["Version"]),
                                        "/var/lib/dpkg/status")
    return db


def dpkg_files(fs: RootFS, db: PackageDB, names: list[str]) -> None:
    """Load ``info/<pkg>.list`` for the named packages only (a live system has thousands)."""
    for name in names:
        if name not in db.packages or name in db.files:
            continue
        for candidate in (f"{name}.list", *(f for f in fs.listdir("/var/lib/dpkg/info")
                                            if f.startswith(f"{name}:") and f.endswith(".list"))):
            text = fs.read_text(f"/var/lib/dpkg/info/{candidate}")
            if text is not None:
                db.files[name] = frozenset(line.strip() for line in text.splitlines() if line.strip())
                break


# -- rpm (sqlite backend) --------------------------------------------------------------------
def _open_ro(fs: RootFS, path: str) -> sqlite3.Connection:
    # immutable=1: never create a journal/WAL file or take a lock inside the inspected tree.
    uri = f"file:{quote(str(fs.host(path)))}?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True)


def parse_rpm_header(blob: bytes) -> dict[int, str | list[str] | list[int]]:
    """Decode an RPM header blob as stored in rpmdb (index count, data length, 16-byte index
    entries tag/type/offset/count big-endian, then the data store)."""
    il, dl = struct.unpack_from(">II", blob, 0)
    base = 8 + 16 * il
    store = blob[base:base + dl]
    out: dict[int, str | list[str] | list[int]] = {}
    for i in range(il):
        tag, kind, offset, count = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        if kind in (_RPM_STRING, _RPM_I18NSTRING):
            end = store.index(b"\0", offset)
            out[tag] = store[offset:end].decode("utf-8", "replace")
        elif kind == _RPM_STRING_ARRAY:
            items, pos = [], offset
            for _ in range(count):
                end = store.index(b"\0", pos)
                items.append(store[pos:end].decode("utf-8", "replace"))
                pos = end + 1
            out[tag] = items
        elif kind == _RPM_INT32:
            out[tag] = list(struct.unpack_from(f">{count}I", store, offset))
    return out


def _read_rpm_sqlite(fs: RootFS, path: str) -> PackageDB:
    db = PackageDB(PackageFormat.RPM)
    try:
        with _open_ro(fs, path) as conn:
            rows = conn.execute("SELECT blob FROM Packages").fetchall()
    except sqlite3.Error as exc:
        fs.problem(path, f"cannot read rpm database: {exc}")
        db.unreadable = f"{path}: {exc}"
        return db
    for (blob,) in rows:
        try:
            hdr = parse_rpm_header(bytes(blob))
        except (struct.error, ValueError):
            continue
        name, version, release = hdr.get(_TAG_NAME), hdr.get(_TAG_VERSION), hdr.get(_TAG_RELEASE)
        if not isinstance(name, str) or not isinstance(version, str):
            continue
        full = f"{version}-{release}" if isinstance(release, str) else version
        db.packages[name] = Package(name, full, version, path)
        base, dirs, idx = hdr.get(_TAG_BASENAMES), hdr.get(_TAG_DIRNAMES), hdr.get(_TAG_DIRINDEXES)
        if isinstance(base, list) and isinstance(dirs, list) and isinstance(idx, list):
            db.files[name] = frozenset(f"{dirs[i]}{b}" for b, i in zip(base, idx, strict=False)
                                       if isinstance(i, int) and i < len(dirs))
    return db


# -- FreeBSD -------------------------------------------------------------------------------
def _read_pkgng(fs: RootFS, path: str) -> PackageDB:
    db = PackageDB(PackageFormat.PKG)
    try:
        with _open_ro(fs, path) as conn:
            rows = conn.execute("SELECT id, name, version FROM packages").fetchall()
            files = conn.execute("SELECT package_id, path FROM files").fetchall()
    except sqlite3.Error as exc:
        fs.problem(path, f"cannot read pkg database: {exc}")
        db.unreadable = f"{path}: {exc}"
        return db
    by_id = {}
    for pid, name, version in rows:
        by_id[pid] = name
        db.packages[name] = Package(name, version, version.split("_", 1)[0].split(",", 1)[0], path)
    collected: dict[str, set[str]] = {}
    for pid, fpath in files:
        if pid in by_id:
            collected.setdefault(by_id[pid], set()).add(fpath)
    db.files = {k: frozenset(v) for k, v in collected.items()}
    return db


def _read_pkg_legacy(fs: RootFS) -> PackageDB:
    """pkg_add era (FreeBSD <= 9): one directory per package with a ``+CONTENTS`` list."""
    db = PackageDB(PackageFormat.PKG)
    for entry in fs.listdir("/var/db/pkg"):
        contents = f"/var/db/pkg/{entry}/+CONTENTS"
        if not fs.is_file(contents):
            continue
        text = fs.read_text(contents) or ""
        name, version, cwd, paths = "", "", "/usr/local", set()
        for line in text.splitlines():
            if line.startswith("@name "):
                full = line[6:].strip()
                name, _, version = full.rpartition("-")
            elif line.startswith("@cwd "):
                cwd = line[5:].strip()
            elif line and not line.startswith("@"):
                paths.add(str(PurePosixPath(cwd) / line.strip()))
        if name:
            db.packages[name] = Package(name, version, version.split("_", 1)[0].split(",", 1)[0], contents)
            db.files[name] = frozenset(paths)
    return db
