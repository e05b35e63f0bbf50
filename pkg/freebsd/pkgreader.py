"""Read a FreeBSD package file and check it against pkg(8)'s documented manifest (pkg-create(8)).

Why our own reader: no FreeBSD system and no pkg(8) can run here, so the package `make
freebsd-pkg` writes is checked by reading it back the way pkg does: the archive's first members
are +COMPACT_MANIFEST and +MANIFEST; the manifest's fields are those pkg-create(8) documents under
"MANIFEST FILE DETAILS" (name, version, origin, comment, arch, www, maintainer, prefix, flatsize,
deps as name -> {origin, version}, files as path -> sha256 or "-" for links, directories), plus
desc, scripts (the phases of pkg-script(5) and the ports' install/deinstall pair) and messages.
Every file in the manifest must be in the payload with that digest, and nothing else may be.

`extract()` installs the payload into a directory as pkg -r would, with sanitised names: absolute
names only, no "..", and no write through a symlink already in the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REQUIRED = {
    "name": str, "version": str, "origin": str, "comment": str, "arch": str, "www": str,
    "maintainer": str, "prefix": str, "flatsize": int, "desc": str, "deps": dict,
}
MANIFEST_ONLY = ("files", "directories", "scripts", "config", "messages")
#: pkg-script(5)'s phases, and the ports' pkg-install/pkg-deinstall pair (run with PRE-/POST-INSTALL,
#: DEINSTALL/POST-DEINSTALL as their second argument).
SCRIPT_KEYS = ("pre-install", "post-install", "install", "pre-deinstall", "post-deinstall", "deinstall")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Report:
    manifest: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    payload: dict[str, tarfile.TarInfo] = field(default_factory=dict)

    def summary(self) -> list[str]:
        m = self.manifest
        return [
            f"{m.get('name')}-{m.get('version')} ({m.get('origin')}), prefix {m.get('prefix')}, abi {m.get('abi')}",
            f"{len(m.get('files', {}))} files, {len(m.get('directories', {}))} directories, "
            f"flatsize {m.get('flatsize')}, {len(m.get('deps', {}))} deps",
            f"scripts: {', '.join(sorted(m.get('scripts', {})))}; config: {', '.join(m.get('config', []))}",
        ]


def deps_from_run_depends(run_depends: str, python_cmd: str) -> dict[str, dict[str, str]]:
    """RUN_DEPENDS (`${PYTHON_PKGNAMEPREFIX}name>min:origin@${PY_FLAVOR}`) as manifest deps.
    Without a ports tree the dependency's built version is unknown; the minimum is recorded."""
    m = re.search(r"python(\d)\.(\d+)", python_cmd)
    flavour = f"py{m.group(1)}{m.group(2)}" if m else "py311"
    out = {}
    for item in run_depends.split():
        spec, _, origin = item.partition(":")
        name, _, minimum = spec.replace("${PYTHON_PKGNAMEPREFIX}", f"{flavour}-").partition(">")
        out[name] = {"origin": origin.split("@")[0], "version": minimum.lstrip("=")}
    return out


def _safe_name(name: str) -> str | None:
    p = PurePosixPath(name)
    if not p.is_absolute() or ".." in p.parts or str(p) != name.rstrip("/"):
        return None
    return str(p)


def check(pkg: Path) -> Report:
    rep = Report()
    try:
        tar = tarfile.open(pkg, "r:*")
    except (OSError, tarfile.TarError) as exc:
        rep.problems.append(f"{pkg}: not a package archive: {exc}")
        return rep
    with tar:
        members = tar.getmembers()
        names = [m.name for m in members[:2]]
        if names != ["+COMPACT_MANIFEST", "+MANIFEST"]:
            rep.problems.append(f"{pkg}: first members are {names}, not +COMPACT_MANIFEST, +MANIFEST")
            return rep
        docs = []
        for m in members[:2]:
            try:
                docs.append(json.loads(tar.extractfile(m).read()))  # type: ignore[union-attr]
            except ValueError as exc:
                rep.problems.append(f"{pkg}: {m.name}: {exc}")
                return rep
        compact, manifest = docs
        rep.manifest = manifest
        for key, kind in REQUIRED.items():
            if not isinstance(manifest.get(key), kind):
                rep.problems.append(f"+MANIFEST: {key}: missing or not a {kind.__name__}")
        if not re.fullmatch(r"[a-z0-9-]+/[A-Za-z0-9._+-]+", str(manifest.get("origin", ""))):
            rep.problems.append(f"+MANIFEST: origin {manifest.get('origin')!r} is not category/port")
        for dep, info in manifest.get("deps", {}).items():
            if not isinstance(info, dict) or not {"origin", "version"} <= set(info):
                rep.problems.append(f"+MANIFEST: deps: {dep}: needs origin and version")
        expected_compact = {k: v for k, v in manifest.items() if k not in MANIFEST_ONLY}
        if compact != expected_compact:
            diff = sorted(set(compact) ^ set(expected_compact)) or [k for k in compact if compact[k] != manifest.get(k)]
            rep.problems.append(f"+COMPACT_MANIFEST differs from +MANIFEST in {diff}")
        for key, text in manifest.get("scripts", {}).items():
            if key not in SCRIPT_KEYS:
                rep.problems.append(f"+MANIFEST: scripts: unknown phase {key!r}")
            elif not text.startswith("#!/bin/sh"):
                rep.problems.append(f"+MANIFEST: scripts: {key} is not a sh script")
        scripts = manifest.get("scripts", {})
        install = scripts.get("install", "")
        if "$KAVSETUP\" \"$@\"" not in install or "set -- install" not in install:
            rep.problems.append("+MANIFEST: scripts: install does not run kavsetup install")
        if "uninstall" not in scripts.get("deinstall", ""):
            rep.problems.append("+MANIFEST: scripts: deinstall does not run kavsetup uninstall")

        payload: dict[str, tarfile.TarInfo] = {}
        for m in members[2:]:
            safe = _safe_name(m.name)
            if safe is None:
                rep.problems.append(f"payload: unsafe member name {m.name!r}")
                continue
            payload[safe] = m
        rep.payload = payload
        files = manifest.get("files", {})
        total = 0
        for path, digest in files.items():
            m = payload.get(path)
            if m is None:
                rep.problems.append(f"payload: {path} listed in +MANIFEST but absent")
            elif digest == "-":
                if not m.issym():
                    rep.problems.append(f"payload: {path} listed as a link but is not one")
            elif not SHA256.match(str(digest)) or not m.isreg():
                rep.problems.append(f"payload: {path}: bad entry (digest {digest!r}, type {m.type!r})")
            else:
                data = tar.extractfile(m).read()  # type: ignore[union-attr]
                total += len(data)
                if hashlib.sha256(data).hexdigest() != digest:
                    rep.problems.append(f"payload: {path}: sha256 differs from +MANIFEST")
        dirs = {d.rstrip("/") for d in manifest.get("directories", {})}
        for path, m in payload.items():
            if path not in files and not (m.isdir() and path in dirs):
                rep.problems.append(f"payload: {path} is not in +MANIFEST")
        if files and total != manifest.get("flatsize"):
            rep.problems.append(f"+MANIFEST: flatsize {manifest.get('flatsize')} but files total {total}")
        for conf in manifest.get("config", []):
            if conf + ".sample" not in files and conf not in files:  # @sample, or @config (the file itself)
                rep.problems.append(f"+MANIFEST: config {conf} is not in the payload, nor its {conf}.sample (@sample)")
    return rep


def extract(pkg: Path, root: Path) -> Report:
    """Install the payload under root (pkg -r root), after check(); raises on any problem."""
    rep = check(pkg)
    if rep.problems:
        raise ValueError("; ".join(rep.problems))
    with tarfile.open(pkg, "r:*") as tar:
        for path, m in sorted(rep.payload.items()):
            target = root / path.lstrip("/")
            parent = target.parent
            for anc in [parent, *parent.parents]:
                if anc == root or root not in anc.parents:
                    break
                if anc.is_symlink():
                    raise ValueError(f"{path}: {anc} is a symlink in the target root")
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(m.mode)
            elif m.issym():
                parent.mkdir(parents=True, exist_ok=True)
                os.symlink(m.linkname, target)
            elif m.isreg():
                parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, m.mode)
                with os.fdopen(fd, "wb") as out:
                    out.write(tar.extractfile(m).read())  # type: ignore[union-attr]
    return rep
