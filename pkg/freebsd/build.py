#!/usr/bin/env python3
"""`make freebsd-pkg`: build the FreeBSD package in pkg(8)'s format without a FreeBSD system.

What the ports framework would do with this port directory, done here from the same files so the
two cannot drift: the variables come from pkg/freebsd/Makefile, the file list from pkg-plist (plus
the Python tree, appended as the port's post-install does), the rc.d scripts from files/*.in
through SUB_LIST (USE_RC_SUBR), the scripts from files/pkg-install.in and pkg-deinstall.in
(SUB_FILES), and the payload from the shared stager (pkg/common/stage.py, `--layout freebsd`).

The package is what `pkg create` writes (pkg-create(8)): an xz-compressed tar whose first members
are +COMPACT_MANIFEST and +MANIFEST (JSON, which pkg reads as UCL), followed by the payload under
absolute paths. Every staged file must be in the plist and every plist entry staged; a mismatch
fails the build. The result is then read back by pkg/freebsd/pkgreader.py.

No FreeBSD machine can run here: the package is checked against pkg(8)'s documented manifest
fields, and its scripts and rc.d scripts run under sh in FreeBSD-layout roots (tests/packaging).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "common"))
sys.path.insert(0, str(HERE))
import pkgreader  # noqa: E402
import stage  # noqa: E402 - puts the tree's runtime/ on sys.path

from runtime.layout import FREEBSD  # noqa: E402

PREFIX = FREEBSD.prefix  # LOCALBASE/PREFIX of the ports tree
#: plist keywords whose path is a file of the payload: plain, @sample (the .sample copy) and @config
#: (a configuration file pkg(8) merges on upgrade, for files that must not have a .sample beside
#: them, e.g. a crontab in etc/cron.d, which cron(8) would read twice)
PAYLOAD = ("", "sample", "config")


def make_vars(makefile: Path = HERE / "Makefile") -> dict[str, str]:
    """`VAR=<tab>value` assignments of the port's Makefile (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", makefile.read_text())
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z_]+)=\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def expand(value: str, v: dict[str, str], python_cmd: str) -> str:
    """``${VAR}`` references as make(1) expands them (PREFIX and PYTHON_CMD are the framework's)."""
    known = {"PREFIX": PREFIX, "PYTHON_CMD": python_cmd}
    for _ in range(10):  # nested references (KAVETC=${PREFIX}/etc/...) resolve in a few rounds
        new = re.sub(r"\$\{(\w+)\}", lambda m: known.get(m.group(1), v.get(m.group(1), "")), value)
        if new == value:
            break
        value = new
    return value


def sub_list(v: dict[str, str], python_cmd: str, var: str = "SUB_LIST") -> dict[str, str]:
    """SUB_LIST (or PLIST_SUB) as the framework expands it, plus PREFIX (always substituted)."""
    values = {"PREFIX": PREFIX, "PYTHON_CMD": python_cmd}
    for item in v[var].split():
        key, _, value = item.partition("=")
        values[key] = expand(value, v, python_cmd)
    return values


def check_layout(v: dict[str, str], python_cmd: str) -> list[str]:
    """The port's directories must be runtime/layout.py's FREEBSD, which kavsetup and the daemons
    use on FreeBSD: the Makefile cannot import it, so the build compares them."""
    want = {"KAVETC": FREEBSD.etc, "KAVSTATE": FREEBSD.state, "KAVLOG": FREEBSD.log, "KAVANSWERS": FREEBSD.answers}
    problems = [f"pkg/freebsd/Makefile: {key}={expand(v.get(key, ''), v, python_cmd)}, but runtime/layout.py "
                f"says {path}" for key, path in want.items() if expand(v.get(key, ""), v, python_cmd) != path]
    return problems


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"%%(\w+)%%", lambda m: values[m.group(1)], text)


def plist_entries(values: dict[str, str], extra: list[str]) -> list[tuple[str, str, str | None]]:
    """(keyword, absolute path, attributes) for each pkg-plist line; '' is a plain file."""
    out = []
    for raw in substitute((HERE / "pkg-plist").read_text(), values).splitlines() + extra:
        line = raw.strip()
        if not line or line.startswith("@comment"):
            continue
        kw, attrs, path = "", None, line
        m = re.match(r"^@(\w+)(?:\(([^)]*)\))?\s+(.*)$", line)
        if m:
            kw, attrs, path = m.group(1), m.group(2), m.group(3)
        out.append((kw, path if path.startswith("/") else f"{PREFIX}/{path}", attrs))
    return out


def stage_tree(dest: Path, values: dict[str, str], v: dict[str, str]) -> list[str]:
    """Stage the payload; returns the rc.d entries USE_RC_SUBR adds to the plist."""
    layout = dataclasses.replace(stage.LAYOUTS["freebsd"], python=values["PYTHON_CMD"])  # as do-install's --python
    stage.stage(TOP, dest, layout)
    for man in sorted((dest / layout.man8).glob("*.8")):  # the framework compresses man pages
        with open(man, "rb") as src, gzip.GzipFile(str(man) + ".gz", "wb", mtime=0) as gz:
            shutil.copyfileobj(src, gz)
        man.unlink()
    conf = dest / values["KAVETC"].lstrip("/") / "kav4mailservers.conf.sample"
    r = subprocess.run([sys.executable, "-m", "kavsetup.cli", "config", "defaults", "--layout", FREEBSD.name],
                       cwd=TOP, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(TOP), "PYTHONDONTWRITEBYTECODE": "1"})
    if r.returncode != 0:
        raise SystemExit(f"build.py: kavsetup config defaults failed: {r.stderr.strip()}")
    conf.write_text(r.stdout)
    rc_entries = []
    rcd = dest / PREFIX.lstrip("/") / "etc/rc.d"
    rcd.mkdir(parents=True, exist_ok=True)
    for name in v["USE_RC_SUBR"].split():
        target = rcd / name
        target.write_text(substitute((HERE / "files" / f"{name}.in").read_text(), values))
        target.chmod(0o755)
        rc_entries.append(f"etc/rc.d/{name}")
    return rc_entries


def scripts(values: dict[str, str]) -> dict[str, str]:
    return {
        "install": substitute((HERE / "files/pkg-install.in").read_text(), values),
        "deinstall": substitute((HERE / "files/pkg-deinstall.in").read_text(), values),
    }


def messages(values: dict[str, str]) -> list[dict[str, str]]:
    """files/pkg-message.in is UCL; its two entries are read with a small pattern (type + heredoc)."""
    text = substitute((HERE / "files/pkg-message.in").read_text(), values)
    return [{"type": t, "message": body.strip("\n") + "\n"}
            for t, body in re.findall(r"type:\s*(\w+)\s*\n\s*message:\s*<<EOM\n(.*?)\nEOM", text, re.S)]


def check_plist(root: Path, entries: list[tuple[str, str, str | None]]) -> list[str]:
    """Staged files and links vs the plist, both ways."""
    staged = {"/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}
    listed = {path for kw, path, _ in entries if kw in PAYLOAD}
    problems = [f"staged but not in pkg-plist: {p}" for p in sorted(staged - listed)]
    problems += [f"in pkg-plist but not staged: {p}" for p in sorted(listed - staged)]
    return problems


def _owner(attrs: str | None) -> tuple[str, str, int | None]:
    if not attrs:
        return "root", "wheel", None
    user, group, mode = (attrs.split(",") + ["", "", ""])[:3]
    return user or "root", group or "wheel", int(mode, 8) if mode else None


def build(out_dir: Path, python_cmd: str = "/usr/local/bin/python3.11") -> Path:
    v = make_vars()
    mismatch = check_layout(v, python_cmd)
    if mismatch:
        raise SystemExit("build.py: the port's paths are not FreeBSD's layout:\n  " + "\n  ".join(mismatch))
    values = sub_list(v, python_cmd)
    plist_values = sub_list(v, python_cmd, "PLIST_SUB")
    with tempfile.TemporaryDirectory(prefix="kav4ms-fbsd-") as tmp:
        root = Path(tmp) / "stage"
        rc_entries = stage_tree(root, values, v)
        libdir = root / PREFIX.lstrip("/") / "lib/kav4mailservers"
        lib = sorted("/" + str(p.relative_to(root)) for p in libdir.rglob("*") if p.is_file() or p.is_symlink())
        entries = plist_entries(plist_values, rc_entries + [p[len(PREFIX) + 1:] for p in lib])
        problems = check_plist(root, entries)
        if problems:
            raise SystemExit("build.py: pkg-plist and the staged tree disagree:\n  " + "\n  ".join(problems))

        files: dict[str, str] = {}
        flatsize = 0
        for kw, path, _ in entries:
            if kw not in PAYLOAD:
                continue
            p = root / path.lstrip("/")
            if p.is_symlink():
                files[path] = "-"  # pkg-create(8): "file - path" for links
            else:
                data = p.read_bytes()
                files[path] = hashlib.sha256(data).hexdigest()
                flatsize += len(data)
        directories = {path + "/": attrs or "y" for kw, path, attrs in entries if kw == "dir"}
        major = v.get("FREEBSD_MAJOR", "14")
        desc = (HERE / "pkg-descr").read_text()
        compact = {
            "name": v["PORTNAME"],
            "origin": f"mail/{v['PORTNAME']}",
            "version": v["DISTVERSION"],
            "comment": v["COMMENT"],
            "maintainer": v["MAINTAINER"],
            "www": v["WWW"],
            "abi": f"FreeBSD:{major}:*",
            "arch": f"freebsd:{major}:*",
            "prefix": PREFIX,
            "flatsize": flatsize,
            "licenselogic": "single",
            "licenses": v["LICENSE"].split(),
            "desc": desc,
            "categories": v["CATEGORIES"].split(),
            "users": v["USERS"].split(),
            "groups": v["GROUPS"].split(),
            "deps": pkgreader.deps_from_run_depends(v["RUN_DEPENDS"], python_cmd),
        }
        manifest = {
            **compact,
            "files": files,
            "directories": directories,
            "config": [path[: -len(".sample")] if kw == "sample" else path for kw, path, _ in entries
                       if kw in ("sample", "config")],
            "scripts": scripts(values),
            "messages": messages(values),
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        pkg_path = out_dir / f"{v['PORTNAME']}-{v['DISTVERSION']}.pkg"
        tmp_pkg = pkg_path.with_suffix(".pkg.tmp")
        attrs = {path: _owner(a) for kw, path, a in entries}
        with tarfile.open(tmp_pkg, "w:xz", format=tarfile.PAX_FORMAT) as tar:
            for name, doc in (("+COMPACT_MANIFEST", compact), ("+MANIFEST", manifest)):
                blob = json.dumps(doc, indent=1, sort_keys=True).encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.uname, info.gname = len(blob), 0o644, "root", "wheel"
                tar.addfile(info, io.BytesIO(blob))
            for kw, path, _ in entries:
                if kw not in (*PAYLOAD, "dir"):
                    continue
                p = root / path.lstrip("/")
                info = tar.gettarinfo(str(p), arcname=path)
                info.name = path  # absolute, as pkg stores its payload
                user, group, mode = attrs[path]
                info.uname, info.gname, info.uid, info.gid, info.mtime = user, group, 0, 0, 0
                if mode is not None:
                    info.mode = mode
                elif info.isdir():
                    info.mode = 0o755
                if info.isreg():
                    with open(p, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
        os.replace(tmp_pkg, pkg_path)
    return pkg_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=TOP / "dist", help="output directory (default dist/)")
    ap.add_argument("--python-cmd", default="/usr/local/bin/python3.11",
                    help="PYTHON_CMD of the ports' python (command_interpreter of the rc.d scripts)")
    args = ap.parse_args(argv)
    pkg_path = build(args.out, args.python_cmd)
    print(f"built {pkg_path}")
    report = pkgreader.check(pkg_path)
    for line in report.summary():
        print(f"  {line}")
    if report.problems:
        print("pkgreader: " + "\n  ".join(report.problems), file=sys.stderr)
        return 1
    print("pkgreader: manifest and payload agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
