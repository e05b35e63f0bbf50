"""A real aveserver on ClamAV containers: signed CVD served, tampered CVD refused on reload while
the previous database keeps answering, --list-bases and --list-viruses (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from runtime.engine.client import AveClient
from tests.support.clamav import build_cvd, make_test_key
from tests.support.engine import REPO, Server
from tests.support.procs import wait_for

MAIN = {"main.info": b"x\n", "main.ndb": b"Main.Sig:0:*:6d61696e736967\n",
        "main.ldb": b"Main.Ldb;Target:0;0&1;6161616161;6262626262\n", "main.cbc": b"ClamBC1\nClamBC2\n"}


def _server(tmp_path: Path) -> Server:
    srv = Server(tmp_path / "srv")
    srv.bases.mkdir(parents=True)
    key = make_test_key().write_public(tmp_path / "test-key.txt")
    srv.write_conf(path={"BasesPublicKey": str(key)})
    build_cvd(srv.bases / "main.cvd", MAIN)
    return srv


def test_cvd_served_and_tampered_reload_refused(tmp_path: Path) -> None:
    srv = _server(tmp_path)
    try:
        srv.start()
        log = srv.log.read_text()
        assert "database container main.cvd version 1" in log and "signed, verified" in log
        assert "unsupported: bytecode 2" in log
        with AveClient(srv.sock) as c:
            assert c.scan_bytes(b"..mainsig..", "a").names == ["Main.Sig"]
            assert c.scan_bytes(b"aaaaa bbbbb", "b").names == ["Main.Ldb"]
        raw = bytearray((srv.bases / "main.cvd").read_bytes())
        raw[700] ^= 0x20
        (srv.bases / "main.cvd").write_bytes(bytes(raw))
        os.kill(srv.pid(), signal.SIGHUP)
        wait_for(lambda: "reload refused" in srv.log.read_text(), what="refusal")
        assert f"{srv.bases / 'main.cvd'}: MD5 of the content" in srv.log.read_text()
        with AveClient(srv.sock) as c:  # the previous database still serves
            assert c.scan_bytes(b"..mainsig..", "a").names == ["Main.Sig"]
    finally:
        srv.stop()


def _aveserver(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime.engine.server", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_list_bases_and_viruses(tmp_path: Path) -> None:
    srv = _server(tmp_path)
    (srv.bases / "local.hdb").write_text("44d88612fea8a8f36de82e1278abb02e:68:Local.Hash\n")
    out = _aveserver("-c", str(srv.conf), "--list-bases")
    assert out.returncode == 0, out.stderr
    assert "container: main.cvd version 1" in out.stdout and "file: local.hdb" in out.stdout
    assert "unsupported: bytecode 2" in out.stdout
    out = _aveserver("-c", str(srv.conf), "--list-viruses")
    assert out.returncode == 0, out.stderr
    names = out.stdout.split("\n")
    assert {"EICAR-Test-File", "Main.Sig", "Main.Ldb", "Local.Hash"} <= set(names)
    (srv.bases / "main.cvd").write_bytes(b"ClamAV-VDB:broken" + b" " * 600)
    out = _aveserver("-c", str(srv.conf), "--list-bases")
    assert out.returncode == 1 and "REFUSED: " in out.stdout and "main.cvd: header" in out.stdout
