"""Real parts for the console tests: aveserver, smtpscanner and kavconsole as the unprivileged user
they run as in production (here ``nobody``), a real SMTP sink, a real headless Chromium.

The daemons share the quarantine and the statistics store, so they run as one unprivileged user;
kavconsole itself is started by root and must drop to [console] User on its own.  The project's
venv interpreter may live under /root (pyenv), which ``nobody`` cannot execute, so the daemons run
on Debian's /usr/bin/python3 of the same minor version with the venv's site-packages on the path.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.filter import REPO, Sink, Stack, _stop, free_port
from tests.support.procs import can_connect, wait_for

USER = "nobody"
ARTIFACTS = Path(os.environ.get("KAV_TEST_ARTIFACTS", REPO / ".pytest-artifacts")) / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def system_python() -> str | None:
    """Debian's python3 when it is the same minor version as ours (extension modules load)."""
    exe = shutil.which("python3", path="/usr/bin")
    if exe is None:
        return None
    out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    return exe if out.stdout.strip() == str(tuple(sys.version_info[:2])) else None


def require_root_stack() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root: the daemons run as nobody and kavconsole must drop root itself")
    exe = system_python()
    if exe is None:
        pytest.skip(f"no /usr/bin/python3 of version {sys.version_info[:2]} for the unprivileged daemons")
    return exe


def chown_tree(path: Path, user: str = USER) -> None:
    pw = pwd.getpwnam(user)
    for dirpath, _dirnames, filenames in os.walk(path):
        for p in (dirpath, *(os.path.join(dirpath, n) for n in filenames)):
            try:
                os.chown(p, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
            except FileNotFoundError:
                pass  # a spool or SQLite journal file the running daemons just removed


class ConsoleStack(Stack):
    """tests.support.filter.Stack plus kavconsole; everything under a /tmp root that nobody owns."""

    console: subprocess.Popen[bytes] | None = None
    console_port: int = 0
    python: str = "/usr/bin/python3"

    @classmethod
    def create(cls, python: str) -> ConsoleStack:
        root = Path(tempfile.mkdtemp(prefix="kavconsole-test.", dir="/tmp"))
        st = cls(root, Sink().start())
        st.python = python
        st.console_port = free_port()
        return st

    # -- files ----------------------------------------------------------------------------
    @property
    def store(self) -> Path:
        return self.root / "db" / "statistics.sqlite"

    @property
    def audit(self) -> Path:
        return self.root / "log" / "console-audit.log"

    @property
    def passwd(self) -> Path:
        return self.root / "console.passwd"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    def write_all(self, console: dict[str, object] | None = None) -> None:
        quar = {"Check": True, "QuarantinePath": self.quarantine, "Quarantine": True, "InfectedQuarantine": True,
                "AdminNotify": False, "SenderNotify": False, "RecipientNotify": False}
        (self.root / "db").mkdir(parents=True, exist_ok=True)
        self.write({"default": quar}, extra={"console": {
            "Listen": f"127.0.0.1:{self.console_port}", "PasswordFile": self.passwd, "AuditLog": self.audit,
            "StatisticsStore": self.store, "User": USER, **(console or {})}})

    def add_user(self, user: str, password: str, role: str = "admin") -> None:
        out = subprocess.run([self.python, "-m", "runtime.console.main", "-c", str(self.conf), "passwd", user,
                              "--role", role, "--stdin"], input=password + "\n", capture_output=True, text=True,
                             env=self.env(), timeout=60)
        assert out.returncode == 0, out.stderr

    def audit_lines(self) -> list[dict[str, object]]:
        import json

        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines()]

    # -- processes ------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        site = sysconfig.get_paths()["purelib"]
        return dict(os.environ, PYTHONPATH=f"{REPO}:{site}", KAV_ENGINE_CACHE=str(self.root / "cache"),
                    HOME=str(self.root))

    def _popen(self, argv: list[str], errname: str, as_user: bool) -> subprocess.Popen[bytes]:
        chown_tree(self.root)
        with open(self.root / "log" / errname, "ab") as err:
            return subprocess.Popen([self.python, *argv], env=self.env(), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, cwd=self.root,
                                    user=USER if as_user else None, group="nogroup" if as_user else None,
                                    extra_groups=[] if as_user else None)

    def start_ave(self) -> None:
        self.ave = self._popen(["-m", "runtime.engine.server", "-c", str(self.conf)], "aveserver.err", True)
        wait_for(lambda: can_connect(str(self.sock)) or self.ave.poll() is not None, timeout=60, what="aveserver")
        assert self.ave.poll() is None, (self.root / "log" / "aveserver.err").read_text()

    def start_scanner(self) -> None:
        self.scanner = self._popen(["-m", "runtime.filter.main", "-c", str(self.conf), "--daemon",
                                    *self.scanner_args], "smtpscanner.err", True)
        wait_for(lambda: can_connect(("127.0.0.1", self.port)) or self.scanner.poll() is not None,
                 what="smtpscanner")
        assert self.scanner.poll() is None, (self.root / "log" / "smtpscanner.err").read_text()

    def start_console(self, *extra: str) -> None:
        """Started as root, like an init script does: kavconsole must drop to nobody itself."""
        self.console = self._popen(["-m", "runtime.console.main", "-c", str(self.conf), *extra],
                                   "kavconsole.err", False)
        host, port = "127.0.0.1", self.console_port
        if "--listen" in extra:
            host, _, p = extra[extra.index("--listen") + 1].rpartition(":")
            port = int(p)
        wait_for(lambda: can_connect((host, port)) or self.console.poll() is not None, what="kavconsole")
        assert self.console.poll() is None, self.console_err()

    def console_err(self) -> str:
        return (self.root / "log" / "kavconsole.err").read_text()

    def stop(self) -> None:
        _stop(self.console)
        super().stop()
        self.sink.stop()

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def browser(tmp: Path):  # noqa: ANN201 - a selenium WebDriver
    """Debian's headless Chromium through chromium-driver (skips with a reason when absent)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup-host.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", f"--user-data-dir={tmp / 'chromium-profile'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.implicitly_wait(15)  # elements of the page a click leads to, on a busy machine
    driver.set_page_load_timeout(60)
    return driver


def screenshot(driver, name: str) -> Path:  # noqa: ANN001
    """A PNG of the current page among the test artifacts (CI keeps .pytest-artifacts/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{time.strftime('%H%M%S')}-{name}.png"
    driver.save_screenshot(str(path))
    return path


class Client:
    """A plain HTTP client with a cookie jar, for requests a browser would not make (forged posts,
    password guessing).  Redirects are not followed, so each answer is seen as sent."""

    def __init__(self, url: str, tls=None) -> None:  # noqa: ANN001 - an ssl.SSLContext for https URLs
        import urllib.parse

        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.tls = tls
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, object] | None = None) -> tuple[int, dict[str, str], str]:
        import http.client
        import urllib.parse

        c = (http.client.HTTPSConnection(self.host, self.port, timeout=60, context=self.tls) if self.tls
             else http.client.HTTPConnection(self.host, self.port, timeout=60))
        self.last_set_cookie = ""
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        text = r.read().decode("utf-8", "replace")
        for name, value in r.getheaders():
            if name.lower() == "set-cookie":
                self.last_set_cookie = value
                k, _, rest = value.partition("=")
                v = rest.split(";", 1)[0]
                if "Max-Age=0" in value:
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = v
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, text

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, object]) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, form)

    @staticmethod
    def csrf(html: str) -> str:
        import re

        m = re.search(r'name="csrf" value="([^"]+)"', html)
        assert m, "no CSRF token in the page"
        return m.group(1)

    def login(self, user: str, password: str) -> int:
        _, _, page = self.get("/login")
        code, _, _ = self.post("/login", {"csrf": self.csrf(page), "user": user, "password": password})
        return code


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate and key for ``host`` (an IP SAN), made with the cryptography package."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kavconsole test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem = directory / "console.crt", directory / "console.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem
