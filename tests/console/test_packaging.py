"""kavconsole's systemd unit and LSB init script, executed; the Webmin module checked and built.

The unit's ExecStart/ExecReload lines and the init script's start/status/reload/stop are run for
real with the installed paths replaced by this tree's program and a scratch configuration (there is
no systemd as PID 1 here).  There is no Webmin here either: the module's Perl is compiled with
``perl -c``, and index.cgi is executed against a stand-in WebminCore (a handful of its functions,
documented below) to see the page it prints.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.support import notify
from tests.support.console import Client
from tests.support.filter import REPO
from tests.support.procs import can_connect

UNIT = REPO / "pkg/deb/debian/units/kav4mailservers-console.service"
INIT = REPO / "pkg/sysvinit/kavconsole"
WEBMIN = REPO / "pkg/webmin/kav4mailservers"
INSTALLED_CONF = "/etc/kav/5.5/kav4mailservers/kav4mailservers.conf"
PW = "correct horse battery"


def _wrapper(st) -> Path:  # noqa: ANN001
    """What /usr/sbin/kavconsole is in the package: a script that runs the console."""
    w = st.root / "kavconsole"
    env = st.env()
    w.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(env['PYTHONPATH'])} exec {st.python} "
                 f"-m runtime.console.main \"$@\"\n")
    w.chmod(0o755)
    return w


def _pid_listening(port: int) -> bool:
    return can_connect(("127.0.0.1", port))


def test_systemd_unit_commands_start_reload_and_stop_the_console(make_console) -> None:  # noqa: ANN001
    st = make_console(start_console=False)
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    svc = unit["Service"]
    assert "Install" in unit and unit["Install"]["WantedBy"] == "multi-user.target"
    assert svc["User"] == "kluser" and svc["NoNewPrivileges"] == "yes"
    argv = shlex.split(svc["ExecStart"])
    assert argv[:2] == ["/usr/sbin/kavconsole", "-c"] and argv[2] == INSTALLED_CONF
    argv = [str(_wrapper(st)), "-c", str(st.conf)]
    # Type=notify: "started" is READY=1 on $NOTIFY_SOCKET from the main process, once it listens
    assert svc["Type"] == "notify"
    manager = notify.manager(st.root / "notify")
    # User= is kluser in the package; the unit's command runs here as nobody, as systemd would switch
    proc = subprocess.Popen(argv, user="nobody", group="nogroup", extra_groups=[],
                            env={**st.env(), "NOTIFY_SOCKET": str(st.root / "notify")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        fields = notify.fields(manager.recv(4096))
        assert fields["READY"] == "1" and fields["MAINPID"] == str(proc.pid), fields
        assert proc.poll() is None and _pid_listening(st.console_port)
        assert Client(st.url).login("admin", PW) == 303
        reload = shlex.split(svc["ExecReload"].replace("$MAINPID", str(proc.pid)))
        assert subprocess.run(reload, check=False).returncode == 0
        time.sleep(0.3)
        assert proc.poll() is None and _pid_listening(st.console_port)  # HUP re-reads the config, keeps serving
        proc.send_signal(signal.SIGTERM)  # systemd's KillSignal
        assert proc.wait(20) == 0
    finally:
        manager.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    if subprocess.run(["systemd-analyze", "--help"], capture_output=True).returncode == 0:
        out = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
        # the installed program is not on this machine; every other complaint is a fault of the unit
        bad = [ln for ln in out.stderr.splitlines() if ln.strip() and "kavconsole" not in ln
               and "kav4mailservers-console.service" not in ln.split(":")[0] and "aveserver" not in ln]
        assert bad == [], out.stderr


def test_init_script_is_off_by_default_then_starts_reports_and_stops(make_console) -> None:  # noqa: ANN001
    st = make_console(start_console=False)
    pidfile = st.root / "kavconsole.pid"
    defaults = st.root / "default-kavconsole"
    env = dict(os.environ, KAVCONSOLE_DEFAULTS=str(defaults))

    def init(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(INIT), action], env=env, capture_output=True, text=True, timeout=60)

    # a daemon that never says it is ready fails the start after START_TIMEOUT (within init's 60 s)
    base = f"DAEMON={_wrapper(st)}\nCONFIG={st.conf}\nPIDFILE={pidfile}\nSTART_TIMEOUT=30\n"
    defaults.write_text(base)
    out = init("start")
    assert out.returncode == 0 and "disabled" in out.stdout
    assert not pidfile.exists() and not _pid_listening(st.console_port)

    defaults.write_text(base + "ENABLED=yes\n")
    out = init("start")
    assert out.returncode == 0, out.stdout + out.stderr
    try:
        # start-stop-daemon --notify-await: "ok" only once kavconsole said it serves, which it says
        # after it listens (as root: a port below 1024 may be configured) and has dropped root
        assert _pid_listening(st.console_port)
        pid = int(pidfile.read_text())
        uid = next(int(ln.split()[1]) for ln in open(f"/proc/{pid}/status") if ln.startswith("Uid:"))
        assert uid == 65534  # started by root, dropped to [console] User
        assert init("status").returncode == 0
        assert init("start").returncode == 0  # already running: no second copy
        assert init("reload").returncode == 0
        time.sleep(0.3)
        assert Client(st.url).login("admin", PW) == 303
    finally:
        out = init("stop")
    assert out.returncode == 0, out.stdout + out.stderr
    assert not _pid_listening(st.console_port)
    assert not pidfile.exists()
    assert init("status").returncode == 3


def test_init_script_fails_with_the_reason_when_the_port_is_taken(make_console) -> None:  # noqa: ANN001
    """The start reports failure, with the daemon's reason, instead of an "ok" for a kavconsole
    that exits a moment later (readiness protocol, runtime/readiness.py)."""
    st = make_console(start_console=False)
    pidfile = st.root / "kavconsole.pid"
    defaults = st.root / "default-kavconsole"
    defaults.write_text(f"DAEMON={_wrapper(st)}\nCONFIG={st.conf}\nPIDFILE={pidfile}\nSTART_TIMEOUT=30\nENABLED=yes\n")
    env = dict(os.environ, KAVCONSOLE_DEFAULTS=str(defaults))
    with socket.create_server(("127.0.0.1", st.console_port)):
        out = subprocess.run(["sh", str(INIT), "start"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "failed" in out.stdout and "Address already in use" in out.stderr, out.stdout + out.stderr
    status = subprocess.run(["sh", str(INIT), "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode != 0


def test_webmin_module_compiles_and_builds() -> None:
    if subprocess.run(["perl", "-v"], capture_output=True).returncode != 0:
        pytest.skip("no perl")
    for f in ("index.cgi", "acl_security.pl", "install_check.pl", "kav4mailservers-lib.pl"):
        out = subprocess.run(["perl", "-c", f], cwd=WEBMIN, capture_output=True, text=True)
        assert out.returncode == 0 and "syntax OK" in out.stderr, out.stderr
    info = dict(line.split("=", 1) for line in (WEBMIN / "module.info").read_text().splitlines())
    assert info["category"] == "servers" and "debian-linux" in info["os_support"]
    for os_name in ("debian-linux", "redhat-linux", "freebsd"):
        conf = dict(ln.split("=", 1) for ln in (WEBMIN / f"config-{os_name}").read_text().splitlines())
        assert conf["console_url"] == "http://127.0.0.1:10180/" and conf["kavconsole"].endswith("/kavconsole")
    out = subprocess.run(["make", "-s", "webmin"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with tarfile.open(REPO / "dist" / "kav4mailservers.wbm.gz") as t:
        names = set(t.getnames())
    for f in ("module.info", "index.cgi", "lang/en", "defaultacl", "acl_security.pl", "install_check.pl",
              "config-debian-linux", "config-freebsd", "config.info"):
        assert f"kav4mailservers/{f}" in names


# A stand-in for the few WebminCore functions the module calls (Webmin is not packaged in Debian):
# init_config reads the module's config file, text() substitutes $1, ui_* print plain HTML.
STANDIN = r'''
package WebminCore;
use strict; use warnings;
sub import {
    no strict 'refs';
    my $caller = caller;
    for my $f (qw(init_config get_module_acl ui_print_header ui_print_footer ui_link text html_escape)) {
        *{"${caller}::$f"} = \&{"WebminCore::$f"};
    }
}
sub init_config {
    for my $pair ([\%main::config, $ENV{WEBMIN_MODULE_CONFIG}], [\%main::text, 'lang/en']) {
        open(my $fh, '<', $pair->[1]) or die "$pair->[1]: $!";
        while (<$fh>) { chomp; my ($k, $v) = split(/=/, $_, 2); $pair->[0]{$k} = $v if defined $v; }
    }
}
sub get_module_acl { return (open => $ENV{WEBMIN_ACL_OPEN}); }
sub ui_print_header { print "<h1>$_[1]</h1>\n"; }
sub ui_print_footer { print "<footer/>\n"; }
sub ui_link { return "<a href=\"" . html_escape($_[0]) . "\" $_[3]>$_[1]</a>"; }
sub text { my ($k, @a) = @_; my $t = $main::text{$k}; $t =~ s/\$(\d)/$a[$1-1]/g; return $t; }
sub html_escape { my ($s) = @_; $s =~ s/&/&amp;/g; $s =~ s/</&lt;/g; $s =~ s/>/&gt;/g; $s =~ s/"/&quot;/g; return $s; }
1;
'''


@pytest.mark.parametrize("acl_open", ["1", "0"])
def test_webmin_index_links_to_the_console(tmp_path: Path, acl_open: str) -> None:
    if subprocess.run(["perl", "-v"], capture_output=True).returncode != 0:
        pytest.skip("no perl")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "WebminCore.pm").write_text(STANDIN)
    prog = tmp_path / "kavconsole"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    conf = tmp_path / "config"
    conf.write_text((WEBMIN / "config-debian-linux").read_text().replace("/usr/sbin/kavconsole", str(prog)))
    env = dict(os.environ, PERL5LIB=str(lib), WEBMIN_MODULE_CONFIG=str(conf), WEBMIN_ACL_OPEN=acl_open)
    out = subprocess.run(["perl", "index.cgi"], cwd=WEBMIN, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if acl_open == "1":
        assert '<a href="http://127.0.0.1:10180/" target=_blank rel=noopener>Open the console</a>' in out.stdout
        assert "kavconsole passwd USER" in out.stdout
    else:
        assert "may not open" in out.stdout and "10180" not in out.stdout
    # a hostile console_url in the config never reaches the page as a javascript: link
    conf.write_text(conf.read_text().replace("http://127.0.0.1:10180/", "javascript:alert(1)//"))
    out = subprocess.run(["perl", "index.cgi"], cwd=WEBMIN, env=env, capture_output=True, text=True)
    assert "javascript:" not in out.stdout
