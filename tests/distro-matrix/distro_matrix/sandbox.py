"""A throw-away copy of a cached root, running in its own namespaces (testing.md: unshare + chroot).

The copy is an overlayfs mount (the cached root is the read-only lower layer; every write of the
test lands in a fresh upper layer that is deleted afterwards). The namespaces are held open by a
small init process (PID 1 of a new PID namespace, chrooted into the copy) that reaps orphans and
plays syslog on /dev/log, so that Postfix and Sendmail logs end up in /var/log/matrix-syslog for
the failure report. /run is left on the overlay (not a tmpfs) so that the host side of the test
sees the daemons' sockets and pid files. Commands enter with nsenter; killing the init makes the kernel kill everything
left in the namespace, so no daemon can outlive a test.

Not bubblewrap: it always sets no-new-privileges and the MTAs' setuid/setgid helpers then fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .spec import HOSTNAME

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# PID 1 inside the namespace. It must reap (the MTAs double-fork), must exit on SIGTERM (PID 1 gets
# only the signals it handles), and collects syslog datagrams so the MTAs' logs are not lost.
_INIT = r"""
import os, signal, socket, sys, select, time
def reap(*_):
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
signal.signal(signal.SIGCHLD, reap)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    os.unlink("/dev/log")
except FileNotFoundError:
    pass
log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
log.bind("/dev/log")
os.chmod("/dev/log", 0o666)
out = open("/var/log/matrix-syslog", "ab", buffering=0)
sys.stdout.write("ready\n"); sys.stdout.flush()
while True:
    try:
        r, _, _ = select.select([log], [], [], 5)
    except InterruptedError:
        continue
    if r:
        data = log.recv(65536)
        out.write(time.strftime("%H:%M:%S ").encode() + data.rstrip(b"\0\n") + b"\n")
"""

# Device nodes a root needs; a private /dev rather than the host's, so nothing in the test can reach
# the host's /dev/log or its disks.
_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))

_SETUP = r"""
set -e
R="$1"; H="$2"; INIT="$3"
ip link set lo up
hostname "$H"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=755,size=16m tmpfs "$R/dev"
for d in @DEVICES@; do
    set -- $(echo "$d" | tr : ' ')
    mknod -m 666 "$R/dev/$1" c "$2" "$3"
done
mkdir -p "$R/dev/shm" "$R/dev/pts"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mkdir -p "$R/run/lock" && chmod 1777 "$R/run/lock"
exec chroot "$R" /usr/bin/env -i PATH=@PATH@ /usr/bin/python3 -c "$INIT"
""".replace("@DEVICES@", " ".join(f"{n}:{a}:{b}" for n, a, b in _DEVICES)).replace("@PATH@", PATH)


def until(pred: Callable[[], bool], timeout: float) -> bool:
    """Poll ``pred`` every 0.2 s for up to ``timeout`` seconds; its last answer (the scenarios' one
    way of waiting for a daemon, a queue or a file inside a sandbox)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


class SandboxError(RuntimeError):
    pass


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Result:
        if self.returncode != 0:
            raise SandboxError(
                f"{' '.join(self.argv)} exited {self.returncode}\n{self.stdout[-2000:]}\n{self.stderr[-2000:]}"
            )
        return self


class Sandbox:
    """One overlay copy of `lower` plus one set of namespaces. Use as a context manager."""

    def __init__(self, lower: Path, name: str = "cell") -> None:
        self.lower = lower
        self.work = Path(tempfile.mkdtemp(prefix=f"kavmatrix-{name}-"))
        self.root = self.work / "root"
        self._holder: subprocess.Popen[bytes] | None = None
        self.init_pid = 0  # host PID of the namespace's PID 1
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        try:
            self._mount_overlay()
            self._start_namespaces()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mount_overlay(self) -> None:
        for d in ("upper", "ovlwork", "root"):
            (self.work / d).mkdir()
        opts = f"lowerdir={self.lower},upperdir={self.work / 'upper'},workdir={self.work / 'ovlwork'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)], check=True)

    def _start_namespaces(self) -> None:
        argv = [
            "unshare", "--net", "--pid", "--fork", "--mount", "--uts", "--ipc", "--propagation", "private",
            "--kill-child", "--", "sh", "-c", _SETUP, "setup", str(self.root), HOSTNAME, _INIT,
        ]  # fmt: skip
        self._holder = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline()
        if line.strip() != b"ready":
            err = self._holder.stderr.read().decode(errors="replace") if self._holder.stderr else ""
            raise SandboxError(f"namespace init did not start: {line!r} {err}")
        (self.work / "holder.pid").write_text(f"{self._holder.pid}\n")
        children = Path(f"/proc/{self._holder.pid}/task/{self._holder.pid}/children").read_text().split()
        if len(children) != 1:
            raise SandboxError(f"cannot find the namespace's init: {children}")
        self.init_pid = int(children[0])

    def close(self) -> None:
        for proc in self._daemons.values():
            _kill_tree(proc)
        self._daemons.clear()
        if self._holder is not None:
            if self.init_pid:
                try:
                    os.kill(self.init_pid, signal.SIGKILL)  # the kernel then kills the whole namespace
                except ProcessLookupError:
                    pass
            try:
                self._holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._holder.kill()
                self._holder.wait()
            self._holder = None
        if self.root.is_mount():
            for _ in range(50):
                if subprocess.run(["umount", str(self.root)], stderr=subprocess.DEVNULL).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                subprocess.run(["umount", "-l", str(self.root)])
        if not os.environ.get("KAVMATRIX_KEEP"):
            shutil.rmtree(self.work, ignore_errors=True)

    # -- running things inside -------------------------------------------------------------------
    def _enter(self, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        if not self.init_pid:
            raise SandboxError("sandbox not started")
        base = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        base.update(env or {})
        return [
            "nsenter", "-t", str(self.init_pid), "-n", "-p", "-m", "-u", "-i", "-r", "-w", "--",
            "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in base.items()], *argv,
        ]  # fmt: skip

    def run(
        self, argv: list[str], *, input: bytes | None = None, timeout: float = 120, env: dict[str, str] | None = None
    ) -> Result:
        proc = subprocess.run(self._enter(argv, env), input=input, capture_output=True, timeout=timeout)
        return Result(argv, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))

    def sh(self, script: str, *args: str, timeout: float = 120) -> Result:
        return self.run(["sh", "-c", script, "sh", *args], timeout=timeout)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start a foreground daemon; its output goes to /var/log/matrix-<name>.out in the root."""
        out = open(self.root / "var/log" / f"matrix-{name}.out", "ab")
        self._daemons[name] = subprocess.Popen(
            self._enter(argv, env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        out.close()

    def stop(self, name: str, timeout: float = 20) -> None:
        """Stop a daemon started by spawn(), by PID: SIGTERM, then SIGKILL."""
        proc = self._daemons.pop(name, None)
        if proc is not None:
            _kill_tree(proc, timeout)

    def running(self, name: str) -> bool:
        proc = self._daemons.get(name)
        return proc is not None and proc.poll() is None

    def path(self, inside: str) -> Path:
        """Host path of a file inside the root (the overlay's merged view)."""
        return self.root / inside.lstrip("/")

    def wait_port(self, port: int, timeout: float = 30) -> bool:
        """True once something listens on 127.0.0.1:port inside the namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = self.run(
                ["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 2).close()"],
                timeout=10,
            )
            if probe.returncode == 0:
                return True
            time.sleep(0.3)
        return False

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for f in sorted((self.root / "var/log").glob("matrix-*")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(parts)


def cleanup_stale() -> list[str]:
    """Unmount and delete sandboxes whose holder process is gone (a run killed with -9).

    Only our own directories are touched: /tmp/kavmatrix-*/ with a holder.pid naming a dead process.
    """
    removed = []
    for work in Path(tempfile.gettempdir()).glob("kavmatrix-*"):
        pid_file = work / "holder.pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            continue
        root = work / "root"
        if root.is_mount():
            subprocess.run(["umount", "-l", str(root)], check=False)
        shutil.rmtree(work, ignore_errors=True)
        removed.append(str(work))
    return removed


def _kill_tree(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """nsenter forks the real daemon into the PID namespace; signal that child (and nsenter itself)."""
    pids = []
    try:
        pids = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    except OSError:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in [*pids, proc.pid]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=timeout if sig == signal.SIGTERM else 5)
            return
        except subprocess.TimeoutExpired:
            continue
