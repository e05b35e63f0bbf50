"""Running the FreeBSD package's scripts and rc.d scripts on this Linux machine (issue 17).

No FreeBSD system can run here. What is real: the package file `make freebsd-pkg` writes, its
payload (extracted with pkg/freebsd/pkgreader.py as `pkg -r ROOT` would), its install/deinstall
scripts run by /bin/sh, kavsetup from the payload, FreeBSD-layout roots built from
tests/fixtures/roots (and FreeBSD's own sendmail.cf from the corpus), and the real aveserver and
smtpscanner. What stands in, documented as such:
- FreeBSD's python from ports (/usr/local/bin/python3.11): the payload's wrappers and rc.d scripts
  are relocated to this interpreter and to the extraction directory (`relocate`);
- the extraction directory stands for /: the rc.d scripts' default configuration
  (/usr/local/etc/kav/5.5/kav4mailservers/kav4mailservers.conf) is read from inside it;
- /etc/rc.subr and daemon(8): tests/support/rc_subr_standin/ implements only what the rc.d
  scripts use (see the header of each file).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parent / "rc_subr_standin"
FREEBSD_PYTHON = "/usr/local/bin/python3.11"  # PYTHON_CMD the package is built for
sys.path.insert(0, str(REPO / "pkg/freebsd"))
import pkgreader  # noqa: E402

from runtime.layout import FREEBSD  # noqa: E402

__all__ = ["pkgreader", "build_pkg", "kavsetup_shim", "run_script", "tree", "relocate", "remove_payload"]


def build_pkg(out: Path) -> Path:
    """`make freebsd-pkg` into out/ (the same script); returns the package file."""
    r = subprocess.run([sys.executable, str(REPO / "pkg/freebsd/build.py"), "--out", str(out),
                        "--python-cmd", FREEBSD_PYTHON], capture_output=True, text=True)
    assert r.returncode == 0, f"pkg/freebsd/build.py failed:\n{r.stdout}\n{r.stderr}"
    return next(out.glob("kav4mailservers-*.pkg"))


def kavsetup_shim(root: Path, where: Path) -> Path:
    """The payload's kavsetup run by this machine's python (FreeBSD's python stands in)."""
    shim = where / "kavsetup"
    lib = root / "usr/local/lib/kav4mailservers"
    # Neither the working directory (-c puts '' first) nor the venv's editable install of this tree
    # may answer the imports: kavsetup and runtime come from the payload (asserted).
    code = ("import sys; sys.path[:] = [p for p in sys.path if p]; "
            "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in repr(f)]; "
            "import kavsetup; assert kavsetup.__file__.startswith(sys.argv[1]), kavsetup.__file__; "
            "sys.argv = ['kavsetup', *sys.argv[2:]]; from kavsetup.cli import main; sys.exit(main())")
    shim.write_text(
        "#!/bin/sh\n# kavsetup from the FreeBSD package's payload, run by the host's python\n"
        f"PYTHONPATH='{lib}' exec '{sys.executable}' -c \"{code}\" '{lib}' \"$@\"\n")
    shim.chmod(0o755)
    return shim


def run_script(text: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A manifest script as pkg(8) runs it: by /bin/sh, with the package name and the phase."""
    return subprocess.run(["/bin/sh", "-c", text, "pkg-script", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under root: type, mode, owner, content hash or link target."""
    out: dict[str, tuple[object, ...]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = "/" + str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("l", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("d", st.st_mode & 0o7777, st.st_uid, st.st_gid)
        else:
            out[rel] = ("f", st.st_mode & 0o7777, st.st_uid, st.st_gid, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def remove_payload(root: Path, manifest: dict, keep: set[str]) -> None:
    """What pkg delete does after the deinstall script: the files, then the empty directories it
    created (``keep``: the directories the system had before, which pkg did not create)."""
    for path in manifest["files"]:
        (root / path.lstrip("/")).unlink(missing_ok=True)
    dirs = {str(Path(p).parent) for p in manifest["files"]} | {d.rstrip("/") for d in manifest["directories"]}
    for d in sorted(dirs, key=lambda s: s.count("/"), reverse=True):
        target = root / d.lstrip("/")
        while (target != root and "/" + str(target.relative_to(root)) not in keep and target.is_dir()
               and not any(target.iterdir())):
            target.rmdir()
            target = target.parent


def relocate(root: Path) -> None:
    """Make the extracted payload runnable here: wrappers and rc.d scripts point into root and at
    this python; rc.d scripts source the rc.subr stand-in and call the daemon(8) stand-in."""
    lib = root / "usr/local/lib/kav4mailservers"
    for wrapper in (root / "usr/local/sbin").iterdir():
        text = wrapper.read_text()
        text = text.replace(f"#!{FREEBSD_PYTHON}\n", f"#!{sys.executable}\n", 1)
        wrapper.write_text(text.replace('"/usr/local/lib/kav4mailservers"', f'"{lib}"'))
    for script in (root / "usr/local/etc/rc.d").iterdir():
        text = script.read_text()
        text = text.replace(". /etc/rc.subr", f". {STANDIN / 'rc.subr'}")
        text = text.replace("/usr/sbin/daemon", str(STANDIN / "daemon"))
        text = text.replace(FREEBSD_PYTHON, sys.executable)
        text = text.replace(f"{FREEBSD.etc}/", f"{root}{FREEBSD.etc}/")  # their default configuration
        script.write_text(text.replace("/usr/local/sbin/", f"{root}/usr/local/sbin/"))
