"""Helpers for the engine tests: real databases on disk, a real aveserver process."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from runtime.engine.engine import Engine
from runtime.engine.limits import Limits
from tests.support.procs import children as _children
from tests.support.procs import stop, wait_for

REPO = Path(__file__).resolve().parents[2]


def make_engine(tmp: Path, ndb: str = "", hdb: str = "", hsb: str = "", limits: Limits | None = None) -> Engine:
    db = tmp / "bases"
    db.mkdir(exist_ok=True)
    for suffix, text in (("ndb", ndb), ("hdb", hdb), ("hsb", hsb)):
        if text:
            (db / f"test.{suffix}").write_text(text)
    return Engine.load(db, limits, cache_dir=tmp / "cache")






@dataclass
class Server:
    """An aveserver started from a generated kav4mailservers.conf."""

    root: Path
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.root / "kav4mailservers.conf"

    @property
    def sock(self) -> Path:
        return self.root / "run" / "aveserver"

    @property
    def pidfile(self) -> Path:
        return self.root / "run" / "aveserver.pid"

    @property
    def log(self) -> Path:
        return self.root / "log" / "aveserver.log"

    @property
    def bases(self) -> Path:
        return self.root / "bases"

    def write_conf(self, **sections: dict[str, str]) -> None:
        conf: dict[str, dict[str, str]] = {
            "path": {"BasesPath": str(self.bases), "LocalSocketPath": str(self.sock),
                     "AVSpidPATH": str(self.pidfile)},
            "aveserver.options": {"DetachFromTerminal": "no", "Workers": "2", "User": "root"},
            "aveserver.report": {"ReportFileName": str(self.log), "ReportLevel": "4"},
        }
        for name, values in {**self.extra, **sections}.items():
            conf.setdefault(name, {}).update(values)
        self.conf.write_text("".join(f"[{n}]\n" + "".join(f"{k}={v}\n" for k, v in kv.items()) + "\n"
                                     for n, kv in conf.items()))

    def start(self, wait: bool = True, args: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """``env``: variables added to (or, with an empty value, removed from) the inherited ones."""
        self.bases.mkdir(parents=True, exist_ok=True)
        if not self.conf.exists():
            self.write_conf()
        full = dict(os.environ, PYTHONPATH=str(REPO))
        for k, v in (env or {}).items():
            if v:
                full[k] = v
            else:
                full.pop(k, None)
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime.engine.server", "-c", str(self.conf), *args],
                                     env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if wait:
            marker = f"aveserver started, pid {self.proc.pid},"
            wait_for(lambda: (self.log.exists() and marker in self.log.read_text()) or self.proc.poll() is not None,
                     what="aveserver start")
            assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
        return self.proc

    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def stop(self) -> None:
        stop(self.proc)

    def kill_tree(self) -> None:
        """kill -9 the master and its workers (what an admin's ``kill -9`` plus OOM would leave)."""
        assert self.proc is not None
        children = _children(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        for c in children:
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- the clamd protocol, raw --------------------------------------------------------------------
def talk(server: Server, payload: bytes, tcp_port: int = 0) -> bytes:
    if tcp_port:
        s = socket.create_connection(("127.0.0.1", tcp_port), timeout=10)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(server.sock))
    with s:
        s.sendall(payload)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def instream(*chunks: bytes) -> bytes:
    return b"zINSTREAM\0" + b"".join(struct.pack("!I", len(c)) + c for c in chunks) + struct.pack("!I", 0)
