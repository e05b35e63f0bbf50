"""Real Debian package contents for tests, fetched at test-setup time and cached.

Why: the installer must work on the files Debian really ships (Postfix's ``main.cf.debian``,
Exim's ``conf.d`` tree, Sendmail's alternatives), not on files we wrote from memory.  Fetching
a package costs ~1 s once; after that everything comes from the cache, keyed by package name and
version, under ``~/.cache/kav4ms/debs/<pkg>_<version>_<arch>/`` (``KAV4MS_CACHE`` overrides
``~/.cache/kav4ms``)::

    from tests.support.debian_pkgs import extract, install_into
    tree = extract("postfix")                    # host suite (bookworm here); Path of the unpacked tree
    tree = extract("exim4-config", suite="trixie")
    install_into(root, "postfix", suite="trixie")  # copy into root + register in var/lib/dpkg

``extract`` returns a shared, cached tree: treat it as read-only and copy what you change.

Other suites than the host's are reached with a throwaway apt configuration in a private
directory (``~/.cache/kav4ms/apt-<suite>/``: its own sources.list, lists and archives, passed with
``-o Dir::...``); the host's apt configuration and state are never touched.  The suite index is
refreshed when older than a week.  ``PackageUnavailable`` is raised when apt cannot reach the
package (offline); callers should ``pytest.skip`` with its message.

``install_into`` performs the *unpack* half of ``dpkg -i`` only (files, ``status`` stanza and
``info/<pkg>.list``/``.conffiles``); maintainer scripts are not run, so files that Debian's
postinst generates (``/etc/postfix/main.cf``, ``update-exim4.conf.conf``, alternatives) must be
created by the caller, which is what ``tests/detect/roots.py`` does, citing each postinst.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEBIAN_MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
INDEX_MAX_AGE = 7 * 24 * 3600


class PackageUnavailable(RuntimeError):
    """apt could not provide the package (no network, unknown suite or name)."""


def cache_root() -> Path:
    return Path(os.environ.get("KAV4MS_CACHE", Path.home() / ".cache" / "kav4ms"))


def host_suite() -> str:
    """Codename of the running Debian (``bookworm``), from /etc/os-release."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise PackageUnavailable("cannot tell the host's Debian suite from /etc/os-release")


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise fetches: several test sessions (and helpers) share the cache."""
    lock_dir = cache_root() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _apt_options(suite: str | None) -> list[str]:
    """``-o`` options for a private apt configuration for ``suite`` (none for the host suite)."""
    common = ["-o", "APT::Sandbox::User=root", "-o", "Acquire::Languages=none",
              "-o", "Debug::NoLocking=1"]
    if suite is None or suite == host_suite():
        return common
    base = cache_root() / f"apt-{suite}"
    etc = base / "etc"
    (etc / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (etc / "preferences.d").mkdir(parents=True, exist_ok=True)
    (base / "state" / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    sources = f"deb [signed-by={KEYRING}] {DEBIAN_MIRROR} {suite} main\n"
    if not (etc / "sources.list").exists() or (etc / "sources.list").read_text() != sources:
        (etc / "sources.list").write_text(sources)
    return common + [
        "-o", f"Dir::Etc::sourcelist={etc / 'sources.list'}",
        "-o", f"Dir::Etc::sourceparts={etc / 'sources.list.d'}",
        "-o", f"Dir::Etc::preferences={etc / 'preferences'}",
        "-o", f"Dir::Etc::preferencesparts={etc / 'preferences.d'}",
        "-o", f"Dir::State={base / 'state'}",
        "-o", f"Dir::Cache={base / 'cache'}",
        "-o", "Dir::State::status=/dev/null",
    ]


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"})
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise PackageUnavailable(f"{' '.join(argv[:2])} ... failed: {tail[0]}")
    return proc.stdout


def _ensure_index(suite: str | None) -> None:
    if suite is None or suite == host_suite():
        return
    lists = cache_root() / f"apt-{suite}" / "state" / "lists"
    with _locked(f"apt-{suite}"):
        opts = _apt_options(suite)
        indexes = list(lists.glob("*_Packages*"))
        if indexes and time.time() - min(p.stat().st_mtime for p in indexes) < INDEX_MAX_AGE:
            return
        _run(["apt-get", *opts, "update"])


def _lists_dir(suite: str | None) -> Path:
    if suite is None or suite == host_suite():
        return Path("/var/lib/apt/lists")
    return cache_root() / f"apt-{suite}" / "state" / "lists"


def resolve(packages: list[str], suite: str | None = None) -> dict[str, tuple[str, str]]:
    """{package: (version, architecture)} apt would download from ``suite``.

    One ``apt-cache show`` for all names, memoised in ``debs/resolved-<suite>.json`` until the
    suite's index changes: asking apt costs ~1 s, a warm test run should not pay it."""
    _ensure_index(suite)
    stamp = max((p.stat().st_mtime for p in _lists_dir(suite).glob("*_Packages*")), default=0.0)
    memo_file = cache_root() / "debs" / f"resolved-{suite or host_suite()}.json"
    memo: dict[str, Any] = {}
    if memo_file.exists():
        try:
            memo = json.loads(memo_file.read_text())
        except ValueError:
            memo = {}
    if memo.get("_stamp") != stamp:
        memo = {"_stamp": stamp}
    missing = [p for p in packages if p not in memo]
    if missing:
        out = _run(["apt-cache", *_apt_options(suite), "show", "--no-all-versions", *missing])
        for stanza in out.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                          if ": " in line and line[0] != " ")
            if "Package" in fields and "Version" in fields:
                memo[fields["Package"]] = [fields["Version"], fields.get("Architecture", "all")]
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, memo_file)
    result = {}
    for package in packages:
        if package not in memo:
            raise PackageUnavailable(f"apt-cache knows no version of {package} ({suite or host_suite()})")
        result[package] = (memo[package][0], memo[package][1])
    return result


def candidate_version(package: str, suite: str | None = None) -> tuple[str, str]:
    """(version, architecture) apt would download for ``package`` in ``suite``."""
    return resolve([package], suite)[package]


def _slot(package: str, version: str, arch: str) -> Path:
    return cache_root() / "debs" / f"{package}_{version.replace(':', '%3a')}_{arch}"


def deb_file(package: str, suite: str | None = None) -> Path:
    """The cached ``.deb`` of ``package`` (downloaded once)."""
    version, arch = candidate_version(package, suite)
    slot = _slot(package, version, arch)
    deb = slot / "package.deb"
    if deb.exists():
        return deb
    with _locked(slot.name):
        if deb.exists():
            return deb
        slot.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=slot) as tmp:
            _run(["apt-get", *_apt_options(suite), "download", f"{package}={version}"], cwd=Path(tmp))
            debs = list(Path(tmp).glob("*.deb"))
            if len(debs) != 1:
                raise PackageUnavailable(f"apt-get download {package} produced {len(debs)} files")
            os.replace(debs[0], deb)
    return deb


def extract(package: str, suite: str | None = None) -> Path:
    """Unpacked contents of ``package`` (``dpkg-deb -x``), cached; returns the tree's root.

    The tree sits in ``<slot>/tree`` beside ``<slot>/control`` (the control file) and
    ``<slot>/files`` (``dpkg-deb -c`` paths, one a line, ``/``-rooted)."""
    deb = deb_file(package, suite)
    slot = deb.parent
    tree = slot / "tree"
    if tree.is_dir():
        return tree
    with _locked(slot.name):
        if tree.is_dir():
            return tree
        work = Path(tempfile.mkdtemp(dir=slot, prefix=".x-"))
        try:
            _run(["dpkg-deb", "-x", str(deb), str(work / "tree")])
            (work / "control").write_text(_run(["dpkg-deb", "-f", str(deb)]))
            listing = []
            for line in _run(["dpkg-deb", "-c", str(deb)]).splitlines():
                name = line.split(None, 5)[5].split(" -> ")[0]
                name = "/" + name.removeprefix("./").rstrip("/")
                listing.append("/." if name == "/" else name)
            (work / "files").write_text("\n".join(listing) + "\n")
            conffiles = ""
            ctrl = work / "ctrl"
            _run(["dpkg-deb", "-e", str(deb), str(ctrl)])
            if (ctrl / "conffiles").exists():
                conffiles = (ctrl / "conffiles").read_text()
            (work / "conffiles").write_text(conffiles)
            shutil.rmtree(ctrl)
            os.replace(work / "control", slot / "control")
            os.replace(work / "files", slot / "files")
            os.replace(work / "conffiles", slot / "conffiles")
            os.replace(work / "tree", tree)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tree


def control(package: str, suite: str | None = None) -> dict[str, str]:
    """The package's control fields (Package, Version, Architecture, Depends, ...)."""
    slot = extract(package, suite).parent
    fields: dict[str, str] = {}
    key = ""
    for line in (slot / "control").read_text().splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line
        elif ": " in line or line.endswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def install_into(root: Path, package: str, suite: str | None = None) -> dict[str, str]:
    """Unpack ``package`` into ``root`` and record it as installed in root's dpkg database.

    Returns its control fields.  Existing files are overwritten, like dpkg does on unpack."""
    tree = extract(package, suite)
    slot = tree.parent
    shutil.copytree(tree, root, symlinks=True, dirs_exist_ok=True)
    fields = control(package, suite)
    dpkg = root / "var" / "lib" / "dpkg"
    (dpkg / "info").mkdir(parents=True, exist_ok=True)
    stanza = [f"Package: {fields['Package']}", "Status: install ok installed"]
    stanza += [f"{k}: {v}" for k, v in fields.items() if k not in ("Package", "Status")]
    conffiles = (slot / "conffiles").read_text().split()
    if conffiles:
        stanza.append("Conffiles:")
        stanza += [f" {c} newconffile" for c in conffiles]
    status = dpkg / "status"
    old = status.read_text() if status.exists() else ""
    kept = [s for s in old.split("\n\n") if s.strip() and not s.startswith(f"Package: {package}\n")]
    status.write_text("\n\n".join([*kept, "\n".join(stanza)]) + "\n\n")
    arch = fields.get("Architecture", "all")
    multi = fields.get("Multi-Arch") == "same"
    name = f"{package}:{arch}" if multi else package
    shutil.copyfile(slot / "files", dpkg / "info" / f"{name}.list")
    if conffiles:
        (dpkg / "info" / f"{name}.conffiles").write_text("\n".join(conffiles) + "\n")
    return fields
