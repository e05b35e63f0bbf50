"""Writers for the package databases of non-Debian fixture roots (rpm sqlite, FreeBSD pkg).

Why write them: a fixture root for Rocky 9 or FreeBSD 14 cannot be fetched here, but detection
reads those databases, so the fixture must hold one in the real on-disk format.  The rpm
writer follows the RPM header structure (``rpmdb.sqlite`` table ``Packages(hnum, blob)``; blob =
index count, data size, 16-byte big-endian index entries, data store; tags from rpmtag.h).  The
pkg writer creates the subset of pkg(8)'s ``local.sqlite`` schema that names packages and files
(tables ``packages`` and ``files`` with pkg's own column names).  Both are minimal: only what a
reader of names, versions and file lists needs.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path, PurePosixPath

_STRING, _STRING_ARRAY, _INT32 = 6, 8, 4


def rpm_header(name: str, version: str, release: str, arch: str = "x86_64",
               files: tuple[str, ...] = ()) -> bytes:
    entries: list[tuple[int, int, bytes, int]] = [
        (1000, _STRING, name.encode() + b"\0", 1),
        (1001, _STRING, version.encode() + b"\0", 1),
        (1002, _STRING, release.encode() + b"\0", 1),
        (1022, _STRING, arch.encode() + b"\0", 1),
    ]
    if files:
        dirs: list[str] = []
        index: list[int] = []
        bases: list[str] = []
        for f in files:
            p = PurePosixPath(f)
            d = str(p.parent).rstrip("/") + "/"
            if d not in dirs:
                dirs.append(d)
            index.append(dirs.index(d))
            bases.append(p.name)
        entries.append((1116, _INT32, struct.pack(f">{len(index)}I", *index), len(index)))
        entries.append((1117, _STRING_ARRAY, b"".join(b.encode() + b"\0" for b in bases), len(bases)))
        entries.append((1118, _STRING_ARRAY, b"".join(d.encode() + b"\0" for d in dirs), len(dirs)))
    store = b""
    index_bytes = b""
    for tag, kind, data, count in entries:
        if kind == _INT32:
            store += b"\0" * (-len(store) % 4)
        index_bytes += struct.pack(">IIII", tag, kind, len(store), count)
        store += data
    return struct.pack(">II", len(entries), len(store)) + index_bytes + store


def write_rpmdb(path: Path, packages: list[tuple[str, str, str, tuple[str, ...]]]) -> None:
    """``packages``: (name, version, release, files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS 'Packages' "
                     "(hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        for name, version, release, files in packages:
            conn.execute("INSERT INTO Packages (blob) VALUES (?)",
                         (rpm_header(name, version, release, files=files),))
    conn.close()


def write_pkgng(path: Path, packages: list[tuple[str, str, str, tuple[str, ...]]]) -> None:
    """``packages``: (origin, name, version, files) into pkg(8)'s local.sqlite layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE packages (id INTEGER PRIMARY KEY, origin TEXT NOT NULL, "
                     "name TEXT NOT NULL, version TEXT NOT NULL, comment TEXT, prefix TEXT, "
                     "automatic INTEGER NOT NULL DEFAULT 0)")
        conn.execute("CREATE TABLE files (path TEXT PRIMARY KEY, sha256 TEXT, "
                     "package_id INTEGER REFERENCES packages(id))")
        for origin, name, version, files in packages:
            cur = conn.execute("INSERT INTO packages (origin, name, version, prefix) VALUES (?,?,?,?)",
                               (origin, name, version, "/usr/local"))
            conn.executemany("INSERT INTO files (path, package_id) VALUES (?, ?)",
                             [(f, cur.lastrowid) for f in files])
    conn.close()
