"""The FreeBSD package (issue 17): built here, read back, its scripts and rc.d scripts run.

No FreeBSD system can run on these machines, and this says so plainly: the package's install and
deinstall scripts run under /bin/sh in FreeBSD-layout roots (tests/fixtures/roots: FreeBSD 14.1
with Postfix and Exim from ports and base sendmail behind /etc/mail/mailer.conf; the base-sendmail
root uses FreeBSD's own sendmail.cf from the corpus), with the payload's own kavsetup run by this
machine's python. The rc.d scripts run against a STAND-IN for rc.subr and daemon(8)
(tests/support/rc_subr_standin/, implementing only the documented behaviour they use) and start,
check, reload and stop the real aveserver and smtpscanner. See tests/support/freebsd.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import smtplib
import tarfile
import time
from pathlib import Path

import pytest

from runtime.layout import FREEBSD, LINUX
from tests.support import corpus, fixture_roots
from tests.support.filter import EICAR, Sink, Stack, eicar_mail
from tests.support.freebsd import (
    build_pkg,
    kavsetup_shim,
    pkgreader,
    relocate,
    remove_payload,
    run_script,
    tree,
)
from tests.support.procs import can_connect, wait_for

PKGNAME = "kav4mailservers-5.5.0"
CONF = FREEBSD.conf_file  # /usr/local/etc/kav/5.5/kav4mailservers/kav4mailservers.conf
FREEBSD_SENDMAIL_CF = corpus.CORPUS / "sendmail/01-santosha2003__freebsd-desktop"


@pytest.fixture(scope="module")
def pkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pkg(tmp_path_factory.mktemp("fbsd-pkg"))


@pytest.fixture(scope="module")
def manifest(pkg: Path) -> dict:
    rep = pkgreader.check(pkg)
    assert rep.problems == []
    return rep.manifest


def test_manifest_has_pkg_create_fields_and_the_payload_agrees(pkg: Path, manifest: dict) -> None:
    assert manifest["name"] == "kav4mailservers" and manifest["origin"] == "mail/kav4mailservers"
    assert manifest["prefix"] == "/usr/local"
    files = manifest["files"]
    for path in ("/usr/local/sbin/kavsetup", "/usr/local/sbin/aveserver", "/usr/local/etc/rc.d/kav4ms_aveserver",
                 "/usr/local/etc/rc.d/kav4ms_smtpscanner", f"{CONF}.sample", "/usr/local/share/man/man8/kavsetup.8.gz"):
        assert path in files, path
    assert files["/opt/kav/5.5/kav4mailservers/bin/smtpscanner"] == "-"  # a link, per pkg-create(8)
    # the configuration (@sample) and keepup2date's crontab (@config: pkg(8) keeps the admin's edits)
    assert manifest["config"] == ["/usr/local/etc/cron.d/kav4mailservers-keepup2date", CONF]
    # The state tree is root's (kavsetup's journal is in it: a kluser-owned parent would make root
    # refuse, rightly, to trust the journal); the filter owns only the leaves it writes.
    dirs = manifest["directories"]
    assert dirs["/var/db/kav/5.5/kav4mailservers/"] == "root,filter,0750"
    assert dirs["/var/db/kav/5.5/kav4mailservers/quarantine/"] == "kluser,filter,0750"
    assert dirs["/usr/local/etc/kav/5.5/kav4mailservers/"] == "root,filter,0750"
    assert not [d for d in dirs if d.startswith(("/etc/", "/var/lib/"))], "a Linux path in the FreeBSD package"
    assert set(manifest["scripts"]) == {"install", "deinstall"}
    assert {m["type"] for m in manifest["messages"]} == {"install", "remove"}
    assert 'kav4ms_aveserver_enable="YES"' in manifest["messages"][0]["message"]
    with tarfile.open(pkg) as tar:
        rc = tar.getmember("/usr/local/etc/rc.d/kav4ms_aveserver")
        assert rc.mode == 0o755
        text = tar.extractfile(rc).read().decode()  # type: ignore[union-attr]
    for needle in ("# PROVIDE: kav4ms_aveserver", "# BEFORE: mail", "# KEYWORD: shutdown",
                   'rcvar="kav4ms_aveserver_enable"',
                   'command_interpreter="/usr/local/bin/python3.11"', 'extra_commands="reload"', "run_rc_command",
                   f': ${{kav4ms_aveserver_config:="{CONF}"}}'):
        assert needle in text
    assert "%%" not in text
    with tarfile.open(pkg) as tar:
        wrapper = tar.extractfile("/usr/local/sbin/aveserver").read().decode()  # type: ignore[union-attr]
    assert wrapper.startswith("#!/usr/local/bin/python3.11\n") and '"/usr/local/lib/kav4mailservers"' in wrapper


def _rewrite(pkg: Path, out: Path, change: str) -> Path:
    with tarfile.open(pkg) as src, tarfile.open(out, "w:xz", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
            if change == "payload" and m.name == "/usr/local/sbin/kavsetup":
                data = data + b"# tampered\n"  # type: ignore[operator]
                m.size = len(data)
            if change == "name" and m.name == "/usr/local/sbin/kavsetup":
                m.name = "/usr/local/../../etc/evil"
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    return out


@pytest.mark.parametrize(("change", "problem"), [("payload", "sha256 differs"), ("name", "unsafe member name")])
def test_reader_rejects_a_damaged_package(pkg: Path, tmp_path: Path, change: str, problem: str) -> None:
    bad = _rewrite(pkg, tmp_path / "bad.pkg", change)
    rep = pkgreader.check(bad)
    assert any(problem in p for p in rep.problems), rep.problems
    with pytest.raises(ValueError):
        pkgreader.extract(bad, tmp_path / "root")


def _base_sendmail_root(dest: Path) -> Path:
    """FreeBSD 14.1 with base sendmail active: mailer.conf maps to /usr/libexec/sendmail/sendmail,
    sendmail.cf/submit.cf as FreeBSD generates them (from the corpus), no Postfix."""
    if not corpus.available():
        pytest.skip(corpus.SKIP_REASON)
    root = fixture_roots.build("freebsd-14.1-postfix", dest)
    for name in ("sendmail.cf", "submit.cf"):
        shutil.copyfile(FREEBSD_SENDMAIL_CF / name, root / "etc/mail" / name)
    prog = "/usr/libexec/sendmail/sendmail"
    (root / "etc/mail/mailer.conf").write_text(
        "# Execute the \"real\" sendmail program, named /usr/libexec/sendmail/sendmail\n#\n"
        + "".join(f"{cmd}\t{prog}\n"
                  for cmd in ("sendmail", "mailq", "newaliases", "hoststat", "purgestat", "send-mail")))
    for gone in ("usr/local/etc/postfix", "usr/local/sbin", "usr/local/libexec", "var/db/pkg"):
        shutil.rmtree(root / gone)
    return root


ROOTS = {
    "base-sendmail": (_base_sendmail_root, "/etc/mail"),
    "ports-postfix": (lambda d: fixture_roots.build("freebsd-14.1-postfix", d), "/usr/local/etc/postfix"),
    "ports-exim": (lambda d: fixture_roots.build("freebsd-14.1-exim", d), "/usr/local/etc/exim"),
}


@pytest.mark.parametrize("system", sorted(ROOTS))
def test_install_and_deinstall_scripts_round_trip_byte_for_byte(pkg: Path, manifest: dict, tmp_path: Path,
                                                               system: str) -> None:
    make, mta_dir = ROOTS[system]
    root = make(tmp_path / "root")
    before = tree(root)
    mta_before = tree(root / mta_dir.lstrip("/"))
    pkgreader.extract(pkg, root)
    env = {"PKG_ROOTDIR": str(root), "KAVSETUP": str(kavsetup_shim(root, tmp_path))}

    r = run_script(manifest["scripts"]["install"], PKGNAME, "POST-INSTALL", env=env)
    assert r.returncode == 0, r.stderr
    assert tree(root / mta_dir.lstrip("/")) != mta_before, f"{mta_dir} not integrated:\n{r.stderr}"
    assert (root / CONF.lstrip("/")).exists(), "no configuration after POST-INSTALL"
    # FreeBSD's layout throughout (runtime/layout.py): the journal in /var/db/kav, nothing in the
    # Linux directories, and the configuration kavsetup wrote names FreeBSD's paths.
    assert (root / FREEBSD.journal.lstrip("/") / "journal.json").exists()
    for linux in (LINUX.etc_root, LINUX.state_root):
        assert not (root / linux.lstrip("/")).exists(), f"{linux} created in a FreeBSD root"
    conf = (root / CONF.lstrip("/")).read_text()
    assert f"PasswordFile={FREEBSD.etc}/console.passwd" in conf
    assert f"={LINUX.etc_root}/" not in conf

    # An upgrade (PKG_UPGRADE, pkg-script(5)) runs old DEINSTALL and new POST-INSTALL: both keep it.
    integrated = tree(root)
    for script, phase in (("deinstall", "DEINSTALL"), ("install", "POST-INSTALL")):
        r = run_script(manifest["scripts"][script], PKGNAME, phase, env={**env, "PKG_UPGRADE": "true"})
        assert r.returncode == 0, r.stderr
    assert tree(root) == integrated, "an upgrade changed the integration"

    r = run_script(manifest["scripts"]["deinstall"], PKGNAME, "DEINSTALL", env=env)
    assert r.returncode == 0, r.stderr
    assert tree(root / mta_dir.lstrip("/")) == mta_before
    remove_payload(root, manifest, keep={p for p, v in before.items() if v[0] == "d"})
    after = tree(root)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert not changed, "not byte-identical after install + deinstall:\n" + "\n".join(changed[:30])


def test_failed_integration_leaves_the_mta_and_says_what_to_run(pkg: Path, manifest: dict, tmp_path: Path) -> None:
    # FreeBSD 5.3's trimmed sendmail.cf fixture has no QueueDirectory: kavsetup must refuse and roll back.
    root = fixture_roots.build("freebsd-5.3-sendmail", tmp_path / "root")
    cf = (root / "etc/mail/sendmail.cf").read_bytes()
    mail_before = tree(root / "etc/mail")
    pkgreader.extract(pkg, root)
    env = {"PKG_ROOTDIR": str(root), "KAVSETUP": str(kavsetup_shim(root, tmp_path))}
    r = run_script(manifest["scripts"]["install"], PKGNAME, "POST-INSTALL", env=env)
    assert r.returncode == 1
    assert "kavsetup install --non-interactive" in r.stderr and "left as it was" in r.stderr
    assert (root / "etc/mail/sendmail.cf").read_bytes() == cf
    assert tree(root / "etc/mail") == mail_before


# -- rc.d scripts under the rc.subr stand-in, with the real daemons -----------------------------------


def _rc(root: Path, name: str, arg: str, rc_conf: Path) -> tuple[int, str]:
    import subprocess

    r = subprocess.run(["/bin/sh", str(root / "usr/local/etc/rc.d" / name), arg], capture_output=True, text=True,
                       env={**os.environ, "RC_CONF_STANDIN": str(rc_conf)}, timeout=180)
    return r.returncode, r.stdout + r.stderr


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_rc_scripts_start_status_reload_stop_the_real_daemons(pkg: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    pkgreader.extract(pkg, root)
    relocate(root)
    sink = Sink().start()
    stack = Stack(tmp_path / "site", sink)
    # MaxCheckTime: a loaded test machine must not turn the clean message into a 4xx.
    stack.write({"default": {"Check": True, "RecipientAction": "remove"}},
                extra={"aveserver.options": {"DetachFromTerminal": True}, "smtpscan.limits": {"MaxCheckTime": 120}})
    # The configuration where FreeBSD keeps it (the rc.d scripts' default, no *_config in rc.conf).
    conf = root / CONF.lstrip("/")
    shutil.copyfile(stack.conf, conf)
    scanner_pid = tmp_path / "smtpscanner.pid"
    rc_conf = tmp_path / "rc.conf"
    rc_conf.write_text(
        'kav4ms_aveserver_enable="YES"\n'
        f'kav4ms_aveserver_pidfile="{stack.root / "run/aveserver.pid"}"\n'
        'kav4ms_smtpscanner_enable="NO"\n'
        f'kav4ms_smtpscanner_pidfile="{scanner_pid}"\n'
        f'kav4ms_smtpscanner_rundir="{tmp_path / "rundir"}"\n'
        'kav4ms_smtpscanner_user="root"\n')
    started: list[int] = []
    try:
        assert _rc(root, "kav4ms_aveserver", "status", rc_conf) == (1, "kav4ms_aveserver is not running.\n")
        rc, out = _rc(root, "kav4ms_aveserver", "start", rc_conf)
        assert rc == 0, out
        wait_for(lambda: can_connect(stack.sock), what="aveserver's socket after rc.d start")
        rc, out = _rc(root, "kav4ms_aveserver", "status", rc_conf)
        ave_pid = int((stack.root / "run/aveserver.pid").read_text().split()[0])
        started.append(ave_pid)
        assert (rc, out) == (0, f"kav4ms_aveserver is running as pid {ave_pid}.\n")
        assert _rc(root, "kav4ms_aveserver", "start", rc_conf)[0] == 1  # already running

        # Disabled in rc.conf: start refuses and says how; onestart works (rc.subr(8)).
        rc, out = _rc(root, "kav4ms_smtpscanner", "start", rc_conf)
        assert rc == 0 and "Set kav4ms_smtpscanner_enable to YES" in out
        assert not scanner_pid.exists()
        rc, out = _rc(root, "kav4ms_smtpscanner", "onestart", rc_conf)
        assert rc == 0, out
        wait_for(lambda: can_connect(("127.0.0.1", stack.port)), what="smtpscanner after rc.d onestart")
        pid = int(scanner_pid.read_text())
        started.append(pid)
        assert (tmp_path / "rundir").is_dir()  # start_precmd made the run directory
        wait_for(lambda: stack.reload_state().get("pid") == pid, what="smtpscanner's reload state")
        status = _rc(root, "kav4ms_smtpscanner", "onestatus", rc_conf)
        assert status == (0, f"kav4ms_smtpscanner is running as pid {pid}.\n")

        # Mail through the daemons the rc.d scripts started: clean delivered, EICAR not as sent.
        with smtplib.SMTP("127.0.0.1", stack.port, timeout=60) as c:
            c.sendmail("alice@example.com", ["bob@example.com"], eicar_mail("clean"))
            c.sendmail("alice@example.com", ["bob@example.com"], eicar_mail("EICAR"))
        wait_for(lambda: len(sink.got) >= 2, what="two messages at the sink")
        decoded = [part.get_payload(decode=True) or b"" for g in sink.deliveries() for part in g.msg.walk()]
        assert any(b"quarterly numbers" in d for d in decoded), "the clean message was not delivered"
        assert not any(EICAR in d for d in decoded), "EICAR passed the filter the rc.d scripts started"

        # rc.d's shutdown order (rcorder reversed): smtpscanner, which REQUIREs aveserver, stops first.
        for name, pidfile, conf in (("kav4ms_smtpscanner", scanner_pid, rc_conf), ("kav4ms_aveserver", None, rc_conf)):
            prefix = "" if pidfile is None else "one"
            the_pid = ave_pid if pidfile is None else pid
            rc, out = _rc(root, name, f"{prefix}reload", conf)
            assert rc == 0 and f"Reloading {name} config files." in out, out
            assert _alive(the_pid), f"{name} died on reload"
            if pidfile is not None:  # smtpscanner re-read its configuration: a new generation
                wait_for(lambda: stack.reload_state().get("generation") == 2, what="smtpscanner's reload")
            # Let the reload finish (the daemon serves again) before stopping: a SIGTERM that lands
            # while aveserver is still handling SIGHUP is a daemon matter, not the rc.d script's.
            time.sleep(1)
            wait_for(lambda p=pidfile: can_connect(stack.sock) if p is None else can_connect(("127.0.0.1", stack.port)),
                     what=f"{name} serving after reload")
            rc, out = _rc(root, name, f"{prefix}stop", conf)
            assert rc == 0, out
            wait_for(lambda p=the_pid: not _alive(p), what=f"{name} to exit after rc.d stop")
            assert _rc(root, name, f"{prefix}status", conf)[0] == 1

        # A stale pid file naming another process is not "running" (procname + command_interpreter).
        (stack.root / "run/aveserver.pid").write_text(f"{os.getpid()}\n")
        assert _rc(root, "kav4ms_aveserver", "status", rc_conf)[0] == 1
    finally:
        for started_pid in started:  # only what this test started (the last pid file names pytest)
            if _alive(started_pid):
                os.kill(started_pid, signal.SIGKILL)
        sink.stop()


def test_manifest_is_json_pkg_reads_as_ucl(pkg: Path) -> None:
    with tarfile.open(pkg) as tar:
        for name in ("+COMPACT_MANIFEST", "+MANIFEST"):
            json.loads(tar.extractfile(name).read())  # type: ignore[union-attr]
