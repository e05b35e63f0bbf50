"""keepup2date's test parts: a signed mirror tree, a real HTTP server serving it (with the bad
behaviours mirrors really have), tinyproxy with BasicAuth, dnsmasq answering the version TXT.

Prefixes of the HTTP server's paths choose a behaviour, so one server covers every case:
``/ok/`` serves the tree (Range, ETag/Last-Modified, 304), ``/429/`` answers 429 with Retry-After,
``/hang/`` accepts and never answers, ``/html/`` serves an HTML error page with status 200,
``/trunc/`` announces the full length and closes half-way.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from runtime.updater.cdiff import build_cdiff
from tests.support.clamav import TestKey, build_cvd, make_test_key
from tests.support.procs import can_connect, stop, wait_for

#: Three test payloads and their MD5 signatures: main detects A, daily v1 detects B, daily v2 adds C.
SAMPLES = {name: f"kav4ms updater test sample {name} ".encode() * 40 for name in ("A", "B", "C", "D")}


def hdb_line(sample: str) -> bytes:
    data = SAMPLES[sample]
    return f"{hashlib.md5(data).hexdigest()}:{len(data)}:Kav4ms.Test.Updater.{sample}\n".encode()


def daily_members(version: int) -> dict[str, bytes]:
    """daily version 1 detects B; each later version adds one more line (C at 2, D at 3)."""
    lines = hdb_line("B") + b"".join(hdb_line(s) for s in ("C", "D")[: max(0, version - 1)])
    return {"daily.hdb": lines, "daily.info": f"daily version {version}\n".encode()}


def cdiff_script(old: dict[str, bytes], new: dict[str, bytes]) -> bytes:
    """A diff script from ``old`` to ``new`` (appends and deletions per member; enough for the tests)."""
    out = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            out.append(f"UNLINK {name}")
            continue
        a = old.get(name, b"").splitlines()
        b = new[name].splitlines()
        if a == b:
            continue
        out.append(f"OPEN {name}")
        common = 0
        while common < min(len(a), len(b)) and a[common] == b[common]:
            common += 1
        for i in range(common, len(a)):
            out.append(f"DEL {i + 1} {a[i][:8].decode()}")
        for line in b[common:]:
            out.append(f"ADD {line.decode()}")
        out.append("CLOSE")
    return ("\n".join(out) + "\n").encode()


@dataclass
class Mirror:
    """A mirror tree in ClamAV's layout, signed with the session's test key."""

    root: Path
    key: TestKey = field(default_factory=make_test_key)
    daily: int = 0

    def build(self, daily: int = 1, main_version: int = 1) -> Mirror:
        self.root.mkdir(parents=True, exist_ok=True)
        build_cvd(self.root / "main.cvd", {"main.hdb": hdb_line("A"), "main.info": b"main\n"}, self.key,
                  version=main_version)
        self.set_daily(daily)
        return self

    def set_daily(self, version: int, with_cdiffs: bool = True) -> None:
        """Publish daily ``version`` (full container) and the diff from the previous one."""
        build_cvd(self.root / "daily.cvd", daily_members(version), self.key, version=version)
        if with_cdiffs and version > 1:
            script = cdiff_script(daily_members(version - 1), daily_members(version))
            (self.root / f"daily-{version}.cdiff").write_bytes(build_cdiff(script, self.key.n, self.key.d))
        self.daily = version
        future = time.time() + version  # a distinct Last-Modified per version, even within one second
        os.utime(self.root / "daily.cvd", (future, future))


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    hits: list[str]
    ranges: list[str]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.hits.append(self.path)
        mode, _, rest = self.path.lstrip("/").partition("/")
        if mode == "429":
            return self._status(429, {"Retry-After": "120"})
        if mode == "hang":
            time.sleep(30)
            return None
        if mode == "html":
            body = b"<!DOCTYPE html><html><body><h1>Service unavailable</h1></body></html>\n" * 20
            return self._send(200, body, {"Content-Type": "text/html; charset=utf-8"})
        path = self.root / rest
        if ".." in rest or not path.is_file():
            return self._status(404)
        data = path.read_bytes()
        st = path.stat()
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        lastmod = formatdate(st.st_mtime, usegmt=True)
        hdrs = {"ETag": etag, "Last-Modified": lastmod, "Content-Type": "application/octet-stream"}
        if self.headers.get("If-None-Match") == etag:
            return self._status(304, {"ETag": etag})
        rng = self.headers.get("Range", "")
        if rng:
            self.ranges.append(f"{self.path} {rng}")
        if mode == "trunc" and not rng:  # header checks and resumed requests are served whole
            self.send_response(200)
            for k, v in {**hdrs, "Content-Length": str(len(data))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        if rng.startswith("bytes=") and self.headers.get("If-Range", etag) in (etag, lastmod):
            start_s, _, end_s = rng[6:].partition("-")
            start = int(start_s)
            end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
            if start >= len(data):
                return self._status(416, {"Content-Range": f"bytes */{len(data)}"})
            return self._send(206, data[start:end + 1], {**hdrs, "Content-Range": f"bytes {start}-{end}/{len(data)}"})
        return self._send(200, data, hdrs)

    def _status(self, code: int, hdrs: dict[str, str] | None = None) -> None:
        self._send(code, b"" if code == 304 else f"{code}\n".encode(), hdrs or {})

    def _send(self, code: int, body: bytes, hdrs: dict[str, str]) -> None:
        self.send_response(code)
        for k, v in hdrs.items():
            self.send_header(k, v)
        if code != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if code != 304:
            self.wfile.write(body)


class MirrorServer:
    """A real HTTP server on 127.0.0.1 serving ``root`` under the behaviour prefixes."""

    def __init__(self, root: Path) -> None:
        self.hits: list[str] = []
        self.ranges: list[str] = []
        handler = type("H", (_Handler,), {"root": root, "hits": self.hits, "ranges": self.ranges})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        # socketserver accepts on a blocking socket once select() says a connection waits; a run
        # once found that thread blocked in accept() with the queue empty (a client gone in
        # between), and close() then waited for it forever.  With a timeout a spurious wake-up
        # costs a second: accept() raises, socketserver ignores the OSError and polls again.
        # Accepted connections stay blocking (socket.accept gives them no timeout of their own).
        self.httpd.socket.settimeout(1.0)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode: str = "ok") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A Debian daemon started in the foreground for one test module (tinyproxy, dnsmasq)."""

    def __init__(self, argv: list[str], port: int, udp: bool = False) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port = port
        if not udp:
            wait_for(lambda: can_connect(("127.0.0.1", port)) or self.proc.poll() is not None, what=argv[0])
        else:
            time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited: {self.proc.stderr.read().decode()[-400:]}")  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


def start_tinyproxy(tmp: Path, user: str, password: str) -> Daemon:
    port = free_port()
    conf = tmp / "tinyproxy.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nAllow 127.0.0.1\n"
                    f"BasicAuth {user} {password}\nLogLevel Info\nLogFile \"{tmp / 'tinyproxy.log'}\"\n"
                    f"PidFile \"{tmp / 'tinyproxy.pid'}\"\n"
                    + ("User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""))
    return Daemon([shutil.which("tinyproxy") or "tinyproxy", "-d", "-c", str(conf)], port)


def start_dnsmasq(tmp: Path, name: str, txt: str) -> Daemon:
    """dnsmasq answering only ``name`` TXT on 127.0.0.1:PORT; no DHCP, no upstream, no hosts file."""
    port = free_port()
    argv = [shutil.which("dnsmasq") or "dnsmasq", "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null",
            f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
            "--no-poll", f"--pid-file={tmp / 'dnsmasq.pid'}", f"--txt-record={name},{txt}"]
    if os.geteuid() == 0:
        argv.append("--user=nobody")
    return Daemon(argv, port, udp=True)


def write_conf(path: Path, bases: Path, extra: dict[str, dict[str, str]] | None = None) -> Path:
    """A kav4mailservers.conf for keepup2date (merged with aveserver's when ``extra`` holds it)."""
    conf: dict[str, dict[str, str]] = {
        "path": {"BasesPath": str(bases)},
        "updater.path": {"BackUpPath": str(bases.parent / (bases.name + ".backup"))},
        "updater.options": {"PostUpdateCmd": "", "ConnectTimeout": "3", "ReceiveTimeout": "3",
                            "UseUpdateServerUrlOnly": "yes"},
        "updater.report": {"ReportFileName": str(path.parent / "keepup2date.log"), "ReportLevel": "4"},
    }
    for name, values in (extra or {}).items():
        conf.setdefault(name, {}).update(values)
    path.write_text("".join(f"[{n}]\n" + "".join(f"{k}={v}\n" for k, v in kv.items()) + "\n"
                            for n, kv in conf.items()))
    return path


REPO = Path(__file__).resolve().parents[2]


def keepup2date(conf: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command line (``python -m runtime.updater.cli -c CONF ...``); no proxy from this
    machine's environment unless ``env`` gives one."""
    import sys

    base = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    return subprocess.run([sys.executable, "-m", "runtime.updater.cli", "-c", str(conf), *args],
                          env={**base, "PYTHONPATH": str(REPO), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def snapshot(bases: Path) -> dict[str, str]:
    """SHA-256 of every file of a database directory: "the set is unchanged" is equality of two of these."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in bases.iterdir() if p.is_file()}


class AveServer:
    """A real aveserver on a UNIX socket, reading ``bases`` (the set keepup2date maintains)."""

    def __init__(self, root: Path, bases: Path, key_file: Path) -> None:
        self.root, self.bases = root, bases
        self.sock = root / "aveserver.sock"
        self.pidfile = root / "aveserver.pid"
        self.log = root / "aveserver.log"
        self.sections = {
            "path": {"BasesPath": str(bases), "BasesPublicKey": str(key_file), "LocalSocketPath": str(self.sock),
                     "AVSpidPATH": str(self.pidfile)},
            "aveserver.options": {"DetachFromTerminal": "no", "Workers": "2", "User": "root"},
            "aveserver.report": {"ReportFileName": str(self.log), "ReportLevel": "4"},
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, conf: Path) -> None:
        import sys

        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime.engine.server", "-c", str(conf)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        marker = f"aveserver started, pid {self.proc.pid},"
        wait_for(lambda: (self.log.exists() and marker in self.log.read_text()) or self.proc.poll() is not None,
                 what="aveserver start")
        assert self.proc.poll() is None, self.proc.stderr.read().decode()  # type: ignore[union-attr]

    def reloads(self) -> int:
        return self.log.read_text().count("reload complete") if self.log.exists() else 0

    def stop(self) -> None:
        stop(self.proc)


class Pinger:
    """PING and scan aveserver every 50 ms in a thread; records every failure (it must never fail)."""

    def __init__(self, sock: Path) -> None:
        self.sock, self.failures, self.ok = sock, [], 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Pinger:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()

    def _run(self) -> None:
        from runtime.engine.client import AveClient

        while not self._stop.is_set():
            try:
                with AveClient(self.sock, timeout=10) as c:
                    if not c.ping():
                        self.failures.append("PING answered false")
                    c.scan_bytes(b"harmless text " * 10)
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                self.failures.append(repr(exc))
            time.sleep(0.05)


def detects(sock: Path, data: bytes) -> str:
    """The virus name aveserver reports for ``data`` ('' when clean)."""
    from runtime.engine.client import AveClient

    with AveClient(sock, timeout=30) as c:
        verdict = c.scan_bytes(data)
    return ",".join(verdict.names)


NOW = dt.datetime.now(dt.UTC)


def make_cert(cn: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
              ca: bool = False, days: int = 30, start: int = -1) -> x509.Certificate:
    """An X.509 certificate for ``cn``, self-signed or issued by ``issuer`` (certificate, key)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW + dt.timedelta(days=start)).not_valid_after(NOW + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


class Pki:
    """A test CA (in ``root/certs``, as keepup2date finds it beside its configuration) and a signer
    certificate it issued; ``line`` is a ClamAV 1.5 .sign line (detached PKCS#7) for some data."""

    def __init__(self, root: Path) -> None:
        self.ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ca = make_cert("kav4ms test CA", self.ca_key, ca=True)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signer = make_cert("kav4ms test signer", self.key, (self.ca, self.ca_key))
        self.certs = root / "certs"
        self.certs.mkdir(parents=True)
        (self.certs / "ca.crt").write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        (self.certs / "README").write_text("not a certificate: ignored\n")
        self.root = root

    def line(self, data: bytes, signer: x509.Certificate | None = None, key: rsa.RSAPrivateKey | None = None,
             algo: hashes.HashAlgorithm | None = None, levels: str = "220:") -> str:
        der = (pkcs7.PKCS7SignatureBuilder().set_data(data)
               .add_signer(signer or self.signer, key or self.key, algo or hashes.SHA256())
               .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))
        return f"{levels}:pkcs7-pem:{base64.b64encode(der).decode()}"
