"""Helpers for the kavscanner tests: a hostile tree, a real database, the real command line.

The guide's command lines name fixed paths (``/tmp``, ``/tmp/download.lst``, ``/home``,
``/etc/kav/kavscanner.conf``, ``/``).  To run them *as printed* without touching the machine, a
line runs in a private mount namespace (``unshare -m``) where a test directory is bind-mounted on
``/tmp`` (and ``/home``) and ``/etc`` is an overlay whose writes land in the test directory.
Without the privileges for that (not root, no ``unshare``) those tests skip with the reason.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
BODY_SIG = "Test.Body.Sig:0:*:6b61763474657374{2-8}7369676e\n"  # "kav4test" .. "sign"
BODY_HIT = b"prefix kav4test--sign suffix\n"

#: Names an attacker could give files; each one must stay data, never become a command.
NASTY_NAMES = (
    "$(touch PWNED-dollar)",
    "`touch PWNED-backtick`",
    "a;touch PWNED-semicolon;b",
    "x' ; touch PWNED-quote ; '",
    'dq" ; touch PWNED-dq ; "',
    "nl\ntouch PWNED-newline\n",
    "-rf --no-preserve-root",
    "| touch PWNED-pipe",
    "%FILENAME%$(touch PWNED-macro)",
    "sp ace & touch PWNED-amp",
)


def kavscanner_cmd() -> list[str]:
    return [sys.executable, "-m", "runtime.scanner"]


def env_for(config: Path | None = None, cache: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("KAV_CONFIG", None)
    if config is not None:
        env["KAV_CONFIG"] = str(config)
    if cache is not None:
        env["KAV_ENGINE_CACHE"] = str(cache)
    env.update(extra)
    return env


def make_bases(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "test.ndb").write_text(BODY_SIG)
    return d


def write(p: Path, data: bytes | str, mode: int | None = None) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        os.chmod(p, mode)
    return p


def zip_bytes(members: dict[str, bytes]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def tgz_bytes(members: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def encrypted_zip(path: Path, member: str, data: bytes) -> Path | None:
    """A password-protected zip made by Info-ZIP's ``zip -P`` (None when zip is missing)."""
    if shutil.which("zip") is None:
        return None
    work = path.parent / ".ez"
    work.mkdir(parents=True, exist_ok=True)
    (work / member).write_bytes(data)
    subprocess.run(["zip", "-q", "-P", "secret", str(path.resolve()), member], cwd=work, check=True)
    shutil.rmtree(work)
    return path


@dataclass
class Tree:
    root: Path
    outside: Path  # a directory outside the area, holding a virus, reachable by a symlink

    def p(self, rel: str) -> Path:
        return self.root / rel


def build_tree(root: Path, outside: Path | None = None, nasty: bool = True) -> Tree:
    """Clean files, the EICAR family, nested archives, an encrypted zip, a FIFO, a symlink loop,
    a link out of the area, names with spaces, newlines, quotes and ``$( )`` (each infected)."""
    root.mkdir(parents=True, exist_ok=True)
    outside = outside or root.parent / (root.name + "-outside")
    write(outside / "virus-outside.com", EICAR)
    write(root / "clean.txt", "just text\n")
    write(root / "docs" / "readme with spaces.txt", "hello\n")
    write(root / "docs" / "deep" / "deeper" / "clean.bin", bytes(range(256)) * 8)
    write(root / "eicar.com", EICAR)
    write(root / "cure.com", b"CURE-" + EICAR + b"\r\n")
    write(root / "dele.com", b"DELE-" + EICAR)
    write(root / "warn.com", b"WARN-" + EICAR)
    write(root / "susp.com", b"SUSP-" + EICAR)
    write(root / "corr.com", b"CORR-" + EICAR)
    write(root / "body.bin", BODY_HIT)
    inner = zip_bytes({"dir/eicar.com": EICAR, "ok.txt": b"ok\n"})
    write(root / "archives" / "nested.tgz", tgz_bytes({"inner.zip": inner, "note.txt": b"note\n"}))
    write(root / "archives" / "clean.zip", zip_bytes({"a.txt": b"a\n"}))
    encrypted_zip(root / "archives" / "locked.zip", "secret.txt", b"top secret\n")
    os.mkfifo(root / "fifo")
    os.symlink("..", root / "docs" / "loop")
    os.symlink(str(outside), root / "link-out")
    os.symlink(str(outside / "virus-outside.com"), root / "link-to-virus.com")
    if nasty:
        for i, name in enumerate(NASTY_NAMES):
            write(root / "nasty" / name, EICAR if i % 2 == 0 else b"SUSP-" + EICAR)
    return Tree(root, outside)


def run(args: list[str], env: dict[str, str], cwd: Path | None = None, stdin: bytes | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*kavscanner_cmd(), *args], env=env, cwd=cwd, input=stdin.decode() if stdin else None,
                          capture_output=True, text=True, timeout=timeout, errors="surrogateescape")


def as_user(cmd: list[str], user: str = "nobody") -> list[str]:
    import pwd

    pw = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", *cmd]


def can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return r.returncode == 0


def guide_line(line: str, binds: dict[str, Path], env: dict[str, str], cwd: str = "/tmp",
               overlays: dict[str, Path] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a command line exactly as the guide prints it, through ``/bin/sh``, in a private mount
    namespace where ``binds`` (e.g. ``{"/tmp": dir}``) are bind-mounted and each of ``overlays``
    (e.g. ``{"/etc": dir}``) is an overlay whose changes land in ``dir/upper``.  ``kavscanner`` on
    ``PATH`` is a wrapper around this checkout (placed outside the bound paths)."""
    wrapper_dir = Path(env.get("KAV_TEST_BIN", "")) or None
    assert wrapper_dir is not None and wrapper_dir.is_dir(), "env needs KAV_TEST_BIN (see wrapper_bin)"
    full_env = dict(env, PATH=f"{wrapper_dir}:{env.get('PATH', os.defpath)}")
    mounts = []
    # A checkout or interpreter under a bound path (a clone in /tmp, a venv in /home) would vanish
    # behind the bind: hold it first on an empty directory beside the wrapper, outside the bound
    # paths, and point the wrapper's interpreter and PYTHONPATH there.
    hidden = [r for r in dict.fromkeys((REPO, Path(sys.prefix).resolve()))
              if any(r.is_relative_to(t) for t in (*binds, *(overlays or {})))]
    held: dict[Path, Path] = {}
    for n, root in enumerate(hidden):
        if any(root.is_relative_to(h) for h in held):
            continue
        hold = wrapper_dir.parent / f"held-{n}"
        hold.mkdir(exist_ok=True)
        held[root] = hold
        mounts.append(f"mount --bind {shlex.quote(str(root))} {shlex.quote(str(hold))}")

    def relocate(p: Path) -> Path:
        for root, hold in held.items():
            if p.is_relative_to(root):
                return hold / p.relative_to(root)
        return p

    if held:
        full_env["KAV_TEST_PYTHON"] = str(relocate(Path(sys.executable).absolute()))
        full_env["PYTHONPATH"] = os.pathsep.join(str(relocate(Path(e))) if e else e
                                                 for e in full_env.get("PYTHONPATH", "").split(os.pathsep))
    for target, d in (overlays or {}).items():
        (d / "upper").mkdir(parents=True, exist_ok=True)
        (d / "work").mkdir(parents=True, exist_ok=True)
        mounts.append(f"mount -t overlay overlay -o lowerdir={shlex.quote(target)},"
                      f"upperdir={shlex.quote(str(d / 'upper'))},workdir={shlex.quote(str(d / 'work'))} "
                      f"{shlex.quote(target)}")
    for target, src in binds.items():
        mounts.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(target)}")
    script = " && ".join([*mounts, f"cd {shlex.quote(cwd)}", line])
    return subprocess.run(["unshare", "-m", "/bin/sh", "-c", script], env=full_env, capture_output=True,
                          text=True, timeout=timeout, errors="surrogateescape")


def wrapper_bin(d: Path) -> Path:
    """A ``kavscanner`` executable running this checkout's code with this interpreter (or the one
    ``guide_line`` relocated out of a bound path, ``KAV_TEST_PYTHON``)."""
    d.mkdir(parents=True, exist_ok=True)
    w = d / "kavscanner"
    w.write_text(f"#!/bin/sh\npy=${{KAV_TEST_PYTHON:-{shlex.quote(sys.executable)}}}\n"
                 "exec \"$py\" -m runtime.scanner \"$@\"\n")
    w.chmod(0o755)
    return d


def report_objects(text: str) -> dict[str, str]:
    """``{path: "STATUS rest"}`` from 6.8.1 lines of a report or console output."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "] \"" not in line:
            continue
        msg = line.split("] ", 1)[1]
        if not msg.startswith('"'):
            continue
        end = msg.rfind('" ')
        if end <= 0:
            continue
        out[msg[1:end].replace("\\n", "\n")] = msg[end + 2:]
    return out


def mode_of(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)
