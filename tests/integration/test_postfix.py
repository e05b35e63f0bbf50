"""Postfix integration on Debian's own files and on every main.cf/master.cf pair of the corpus.

Each case: dry-run changes nothing and prints a diff; install, the real ``postfix check`` of this
machine on the result, install again changes nothing, uninstall gives the original tree
(content, modes, owners); admin edits survive uninstall; a crash after every step k followed by
``kavsetup recover`` gives the original tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from kavsetup import postfix_cf as pcf
from tests.support import corpus
from tests.support.integration import CORPUS, diff_snapshots, kav, make_root, snapshot, step_count

pytestmark = pytest.mark.root

def _has_main_cf(p: Path) -> bool:
    return (p / "main.cf").exists()


CORPUS_PAIRS = corpus.params("postfix", _has_main_cf)


def _debian(suite: str) -> tuple[Path, Path]:
    try:
        from tests.support.debian_pkgs import PackageUnavailable, extract
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"tests.support.debian_pkgs not importable: {exc}")
    try:
        tree = extract("postfix", suite=suite)
    except PackageUnavailable as exc:
        pytest.skip(f"Debian postfix package for {suite} unavailable: {exc}")
    share = tree / "usr" / "share" / "postfix"
    return share / "main.cf.debian", share / "master.cf.dist"


def _case_files(case: str) -> tuple[Path | bytes, Path | bytes]:
    if case.startswith("debian-"):
        return _debian(case.split("-", 1)[1])
    if case == "host-postinst":
        if not Path("/etc/postfix/main.cf").exists():
            pytest.skip("postfix is not configured on this host")
        return Path("/etc/postfix/main.cf").read_bytes(), Path("/etc/postfix/master.cf").read_bytes()
    if case == "crlf-nofinalnl":
        main, master = _debian("bookworm")
        return (main.read_bytes().replace(b"\n", b"\r\n"), master.read_bytes().rstrip(b"\n"))
    d = CORPUS / "postfix" / case
    return d / "main.cf", d / "master.cf"


CASES = ["debian-bookworm", "debian-trixie", "host-postinst", "crlf-nofinalnl", *CORPUS_PAIRS]


def _root(tmp_path: Path, case: str) -> Path:
    main, master = _case_files(case)
    return make_root(tmp_path, {"/etc/postfix/main.cf": main, "/etc/postfix/master.cf": master})


def _install_args(root: Path, *extra: str) -> list[str]:
    return ["install", "--root", str(root), "--mta", "postfix", "--mta-config", "/etc/postfix/main.cf",
            "--non-interactive", *extra]


def _has_filter(root: Path) -> bool:
    text = (root / "etc/postfix/main.cf").read_bytes().decode("utf-8", "surrogateescape")
    value = pcf.get_param(text, "content_filter") or ""
    return bool(value) and not value.startswith("kavscan:")


def _flags(root: Path) -> list[str]:
    return ["--chain"] if _has_filter(root) else []


def _checker_errors(root: Path) -> set[str]:
    """Fatal/error/warning lines of this machine's real ``postconf -M`` and ``postfix check`` on
    the root's configuration, with the path taken out so before/after can be compared.  Both
    run at once: Postfix pauses a second before exiting on a fatal error, and corpus
    configurations (maps of other hosts) have those."""
    cfg = str(root / "etc/postfix")
    argvs = [["postconf", "-c", cfg, "-M"]]
    main = (root / "etc/postfix/main.cf").read_text("utf-8", "surrogateescape")
    daemon_dir = pcf.get_param(main, "daemon_directory") or "/usr/lib/postfix/sbin"
    if Path(daemon_dir, "postfix-script").exists():
        # postfix check runs $daemon_directory/postfix-script: only meaningful when this
        # machine has it where the configuration says (RHEL/OpenBSD corpus files do not).
        argvs.append(["postfix", "-c", cfg, "check"])
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for argv in argvs]
    out: set[str] = set()
    for p in procs:
        text, _ = p.communicate(timeout=60)
        found = {m.group(0).replace(cfg, "CFG") for m in re.finditer(r"(fatal|error|warning): .*", text)}
        if p.returncode != 0 and not found:
            found.add(f"{p.args[0]} exited {p.returncode}")
        out |= found
    return out


def _checker_errors_soon(root: Path) -> Future[set[str]]:
    """The checker on a copy of the original configuration, in the background: corpus
    configurations name network lookup tables whose opening makes postconf slow, and the
    answer is only needed once the installed configuration is checked too."""
    if not shutil.which("postfix"):
        done: Future[set[str]] = Future()
        done.set_result(set())
        return done
    copy = root.parent / "original-config"
    shutil.copytree(root / "etc/postfix", copy / "etc/postfix")
    pool = ThreadPoolExecutor(max_workers=1)
    fut = pool.submit(_checker_errors, copy)
    pool.shutdown(wait=False)
    return fut


def _postfix_check(root: Path, before: set[str]) -> None:
    """Our edits add no error to what the real checker says about the configuration (corpus
    files name maps and certificates of their own hosts; those errors were there before)."""
    if not shutil.which("postfix"):
        pytest.skip("postfix is not installed on this machine: cannot run postfix check")
    assert _checker_errors(root) <= before
    if not before:
        r = subprocess.run(["postconf", "-c", str(root / "etc/postfix"), "-M", "kavscan/unix"],
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0 and "kavscan" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("case", CASES)
def test_round_trip(tmp_path: Path, case: str) -> None:
    root = _root(tmp_path, case)
    original = snapshot(root)
    errors_before = _checker_errors_soon(root)
    code, out = kav(*_install_args(root, *_flags(root), "--dry-run"))
    assert code == 0, out
    assert "+content_filter = kavscan:[127.0.0.1]:" in out
    assert "plan: start kav4mailservers-smtpscanner and wait until it answers on inet:127.0.0.1:" in out
    assert diff_snapshots(original, snapshot(root)) == []

    code, out = kav(*_install_args(root, *_flags(root)))
    assert code == 0, out
    main = (root / "etc/postfix/main.cf").read_text("utf-8", "surrogateescape")
    master = (root / "etc/postfix/master.cf").read_text("utf-8", "surrogateescape")
    fport = int(pcf.get_param(main, "content_filter").rsplit(":", 1)[1])
    conf = (root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf").read_text()
    forward = next(ln for ln in conf.splitlines() if ln.startswith("ForwardMailer="))
    rport = int(forward.rsplit(":", 1)[1])
    # The default is the daemon form (issue 20): smtpscanner listens on the filter port itself.
    assert pcf.find_service(master, f"127.0.0.1:{fport}/inet") is None
    assert f"ListenAddress=inet:127.0.0.1:{fport}" in conf
    reinject = pcf.find_service(master, f"127.0.0.1:{rport}/inet")
    assert reinject is not None and "smtpd" in reinject.fields
    assert (root / "var/spool/filter").stat().st_mode & 0o7777 == 0o750
    if case == "crlf-nofinalnl":
        assert b"\r\ncontent_filter = kavscan:[127.0.0.1]:10025\r\n" in (root / "etc/postfix/main.cf").read_bytes()
    before = errors_before.result()
    if case.startswith("debian-") or case == "host-postinst":
        assert before == set()
    _postfix_check(root, before)

    installed = snapshot(root)
    code, out = kav(*_install_args(root, *_flags(root)))
    assert code == 0 and "nothing to do" in out
    assert diff_snapshots(installed, snapshot(root)) == []

    code, out = kav("uninstall", "--root", str(root))
    assert code == 0, out
    assert diff_snapshots(original, snapshot(root)) == []
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0 and "nothing to uninstall" in out


@pytest.mark.parametrize("case", CASES)
def test_proxy_round_trip(tmp_path: Path, case: str) -> None:
    """The before-queue form (SMTPD_PROXY_README) on every pair: main.cf untouched, each smtpd
    that takes mail in wrapped with smtpd_proxy_filter, pickup given our content_filter; the real
    checker is happy; uninstall gives back the original tree byte for byte."""
    root = _root(tmp_path, case)
    original = snapshot(root)
    main_before = (root / "etc/postfix/main.cf").read_bytes()
    errors_before = _checker_errors_soon(root)
    answers = tmp_path / "answers.yaml"
    answers.write_text("postfix_mode: proxy\n")
    code, out = kav(*_install_args(root, "--answers", str(answers), "--dry-run"))
    free = [e for e in pcf.services((root / "etc/postfix/master.cf").read_text("utf-8", "surrogateescape"))
            if e.fields[7] == "smtpd" and not any(f.startswith(("content_filter=", "smtpd_proxy_filter="))
                                                  for f in e.fields)]
    if not free:  # every smtpd sends its mail elsewhere itself: nothing to stand in front of
        assert code != 0 and "has no smtpd service to put the before-queue filter in front of" in out, out
        assert diff_snapshots(original, snapshot(root)) == []
        return
    assert code == 0, out
    assert "+  -o smtpd_proxy_filter=127.0.0.1:" in out and "+content_filter" not in out
    assert "plan: start kav4mailservers-smtpscanner and wait until it answers on inet:127.0.0.1:" in out
    assert diff_snapshots(original, snapshot(root)) == []

    code, out = kav(*_install_args(root, "--answers", str(answers)))
    assert code == 0, out
    assert (root / "etc/postfix/main.cf").read_bytes() == main_before
    master = (root / "etc/postfix/master.cf").read_text("utf-8", "surrogateescape")
    conf = (root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf").read_text()
    listen = next(ln for ln in conf.splitlines() if ln.startswith("ListenAddress="))
    fport = int(listen.rsplit(":", 1)[1])
    assert "Protocol=smtp" in conf and "BeforeQueue=yes" in conf  # RecipientAction=reject is allowed
    wrapped = [e for e in pcf.services(master) if f"smtpd_proxy_filter=127.0.0.1:{fport}" in e.fields]
    assert sorted(e.service_key for e in wrapped) == sorted(e.service_key for e in free)
    assert all("smtpd_proxy_timeout=300s" in e.fields for e in wrapped)
    pickup = [e for e in pcf.services(master) if e.fields[7] == "pickup"]
    assert all(f"content_filter=kavscan:[127.0.0.1]:{fport}" in e.fields or
               sum(f.startswith("content_filter=") for f in e.fields) == 1 for e in pickup)  # its own kept
    # the reinjection listener is not wrapped (mail would loop through the filter)
    forward = next(ln for ln in conf.splitlines() if ln.startswith("ForwardMailer="))
    reinject = pcf.find_service(master, f"127.0.0.1:{forward.rsplit(':', 1)[1]}/inet")
    assert reinject is not None and "smtpd_proxy_filter" not in reinject.text
    assert reinject.fields[6] == "-"  # as many processes as the smtpd services it takes mail from
    _postfix_check(root, errors_before.result())

    installed = snapshot(root)
    code, out = kav(*_install_args(root, "--answers", str(answers)))
    assert code == 0 and "nothing to do" in out
    assert diff_snapshots(installed, snapshot(root)) == []
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0, out
    assert diff_snapshots(original, snapshot(root)) == []


def test_proxy_form_leaves_other_filters_alone(tmp_path: Path) -> None:
    """Another after-queue filter's reinjection listener (``-o content_filter=``) and a service
    with its own before-queue filter are not wrapped (the latter is reported); the site's
    content_filter stays in main.cf and mail we reinject still goes through it."""
    root = _root(tmp_path, "debian-bookworm")
    main = root / "etc/postfix/main.cf"
    main.write_text(main.read_text() + "content_filter = smtp-amavis:[127.0.0.1]:10024\n")
    master = root / "etc/postfix/master.cf"
    master.write_text(master.read_text() + "127.0.0.1:10027 inet n - n - - smtpd\n  -o content_filter=\n"
                      "2525 inet n - n - - smtpd\n  -o smtpd_proxy_filter=127.0.0.1:10099\n")
    original = snapshot(root)
    answers = tmp_path / "answers.yaml"
    answers.write_text("postfix_mode: proxy\n")
    code, out = kav(*_install_args(root, "--answers", str(answers)))
    assert code == 0, out
    assert "2525/inet has its own smtpd_proxy_filter=127.0.0.1:10099" in out
    text = master.read_text()
    assert "smtpd_proxy_filter=127.0.0.1:10025" not in pcf.find_service(text, "127.0.0.1:10027/inet").text
    assert "smtpd_proxy_filter=127.0.0.1:10025" not in pcf.find_service(text, "2525/inet").text
    assert "smtpd_proxy_filter=127.0.0.1:10025" in pcf.find_service(text, "smtp/inet").text
    reinject = pcf.find_service(text, "127.0.0.1:10026/inet")
    assert "content_filter=smtp-amavis:[127.0.0.1]:10024" in reinject.fields
    assert pcf.get_param(main.read_text(), "content_filter") == "smtp-amavis:[127.0.0.1]:10024"
    assert kav("uninstall", "--root", str(root))[0] == 0
    assert diff_snapshots(original, snapshot(root)) == []


def test_services_with_their_own_content_filter_are_reported_as_postfix_reads_them() -> None:
    """The last ``-o content_filter=`` of a service is the one Postfix applies: a service whose
    last one is another filter is reported (its mail is not scanned), one whose last is empty
    (the reinjection idiom) or ours is not, and each service is named once."""
    from kavsetup.mta.postfix import filter_overrides

    master = ("smtp inet n - y - - smtpd\n"
              "2525 inet n - y - - smtpd\n  -o content_filter=\n  -o content_filter=smtp-amavis:[127.0.0.1]:10024\n"
              "2526 inet n - y - - smtpd\n  -o content_filter=smtp-amavis:[127.0.0.1]:10024\n  -o content_filter=\n"
              "2527 inet n - y - - smtpd\n  -o content_filter=a:[127.0.0.1]:1\n  -o content_filter=b:[127.0.0.1]:2\n"
              "127.0.0.1:10026 inet n - n - - smtpd\n  -o content_filter=\n")
    assert filter_overrides(master) == ("2525/inet (content_filter=smtp-amavis:[127.0.0.1]:10024)",
                                        "2527/inet (content_filter=b:[127.0.0.1]:2)")


def _admin_edit(main: str, master: str) -> tuple[str, str]:
    """What an administrator does between install and uninstall."""
    main = pcf.set_param(main, "myhostname", "edited.example.org")
    nl = pcf.newline_of(main)
    main = (main if main.endswith("\n") or not main else main + nl) + f"# admin: tuned{nl}admin_new_param = 42{nl}"
    nl = pcf.newline_of(master)
    if master and not master.endswith("\n"):
        master += nl
    master += f"adminsvc  unix  -       n       n       -       -       pipe{nl}  user=nobody argv=/bin/true{nl}"
    return main, master


@pytest.mark.parametrize("case", CASES)
def test_admin_edits_survive_uninstall(tmp_path: Path, case: str) -> None:
    root = _root(tmp_path, case)
    mp, sp = root / "etc/postfix/main.cf", root / "etc/postfix/master.cf"
    orig_main, orig_master = (p.read_text("utf-8", "surrogateescape") for p in (mp, sp))
    code, out = kav(*_install_args(root, *_flags(root)))
    assert code == 0, out
    main, master = _admin_edit(mp.read_text("utf-8", "surrogateescape"), sp.read_text("utf-8", "surrogateescape"))
    mp.write_text(main, "utf-8", "surrogateescape")
    sp.write_text(master, "utf-8", "surrogateescape")
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0, out
    want_main, want_master = _admin_edit(orig_main, orig_master)
    assert mp.read_text("utf-8", "surrogateescape") == want_main
    assert sp.read_text("utf-8", "surrogateescape") == want_master
    assert not (root / "var/lib/kav").exists()
    assert "kluser" not in (root / "etc/passwd").read_text()


def test_changed_content_filter_is_kept_and_reported(tmp_path: Path) -> None:
    root = _root(tmp_path, "debian-bookworm")
    mp = root / "etc/postfix/main.cf"
    orig = mp.read_text()
    assert kav(*_install_args(root))[0] == 0
    mp.write_text(pcf.set_param(mp.read_text(), "content_filter", "smtp:[10.0.0.9]:10024"))
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0
    assert "content_filter was changed since install" in out
    assert mp.read_text() == pcf.set_param(orig, "content_filter", "smtp:[10.0.0.9]:10024")


@pytest.mark.parametrize("case", ["debian-bookworm", "crlf-nofinalnl", *CORPUS_PAIRS])
def test_crash_after_every_step_then_recover(tmp_path: Path, case: str) -> None:
    probe = _root(tmp_path / "probe", case)
    assert kav(*_install_args(probe, *_flags(probe)))[0] == 0
    steps = step_count(probe)
    installed = snapshot(probe)
    for k in range(1, steps + 1):
        root = _root(tmp_path / f"k{k}", case)
        original = snapshot(root)
        code, _ = kav(*_install_args(root, *_flags(root)), fail_after=k)
        assert code == -9
        code, out = kav("status", "--root", str(root))
        assert code == 1 and "INTERRUPTED" in out
        code, out = kav("recover", "--root", str(root))
        assert code == 0, out
        assert diff_snapshots(original, snapshot(root)) == [], f"after crash at step {k}"
    # and a full install on the last root equals the probe's (paths are relative, so compare).
    assert kav(*_install_args(root, *_flags(root)))[0] == 0
    def strip(s: dict) -> dict:
        return {k: v for k, v in s.items() if "journal" not in k}
    assert strip(snapshot(root)) == strip(installed)


def test_real_kill_via_env_hook_then_next_command_recovers(tmp_path: Path) -> None:
    """The env hook (KAVSETUP_FAIL_AFTER_STEP) really kills the process; the next install
    finds the interrupted run, rolls it back and installs."""
    root = _root(tmp_path, "debian-bookworm")
    original = snapshot(root)
    env = dict(os.environ, KAVSETUP_FAIL_AFTER_STEP="12")
    p = subprocess.run([sys.executable, "-m", "kavsetup.cli", *_install_args(root)], env=env, capture_output=True,
                       text=True, check=False)
    assert p.returncode == 75, p.stdout + p.stderr
    assert diff_snapshots(original, snapshot(root)) != []
    code, out = kav(*_install_args(root))
    assert code == 0 and "interrupted run" in out and "rolled back" in out, out
    assert kav("uninstall", "--root", str(root))[0] == 0
    assert diff_snapshots(original, snapshot(root)) == []


@pytest.mark.corpus
def test_existing_content_filter_refused_without_chain(tmp_path: Path) -> None:
    corpus.require()
    root = _root(tmp_path, "02-fonylew__config-mailgateway")
    original = snapshot(root)
    code, out = kav(*_install_args(root))
    assert code == 2
    assert "already sets content_filter = smtp-amavis:[127.0.0.1]:10024" in out and "--chain" in out
    assert diff_snapshots(original, snapshot(root)) == []
    code, out = kav(*_install_args(root, "--chain"))
    assert code == 0, out
    master = (root / "etc/postfix/master.cf").read_text()
    # 10025 is amavis's reinjection listener there: both our ports move, consistently.
    assert "ports 10025/10026 are taken; using 10026/10027" in out
    svc = pcf.find_service(master, "127.0.0.1:10027/inet")
    assert svc is not None and "content_filter=smtp-amavis:[127.0.0.1]:10024" in svc.text
    conf = (root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf").read_text()
    assert "ForwardMailer=smtp:127.0.0.1:10027" in conf


def test_daemon_form_and_smtp_protocol(tmp_path: Path) -> None:
    root = _root(tmp_path, "debian-bookworm")
    before = _checker_errors(root)
    answers = tmp_path / "answers.yaml"
    answers.write_text("protocol: smtp\npostfix_mode: daemon\nadmin_address: av-admin@example.org\n")
    code, out = kav(*_install_args(root, "--answers", str(answers)))
    assert code == 0, out
    master = (root / "etc/postfix/master.cf").read_text()
    assert pcf.find_service(master, "127.0.0.1:10025/inet") is None
    t = pcf.find_service(master, "kavscan/unix")
    assert t is not None and "smtp_send_xforward_command=yes" in t.text and t.fields[7] == "smtp"
    conf = (root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf").read_text()
    for want in ("ListenAddress=inet:127.0.0.1:10025", "Protocol=smtp", "EHLOsupportXFORWARD=yes",
                 "AdminAddress=av-admin@example.org"):
        assert want in conf
    _postfix_check(root, before)


def test_spawn_form_when_answered(tmp_path: Path) -> None:
    """The guide's form (4.4.3) stays one answer away: master.cf spawns smtpscanner per connection."""
    root = _root(tmp_path, "debian-bookworm")
    before = _checker_errors(root)
    answers = tmp_path / "answers.yaml"
    answers.write_text("postfix_mode: spawn\n")
    code, out = kav(*_install_args(root, "--answers", str(answers), "--dry-run"))
    assert code == 0 and "plan: start kav4mailservers-smtpscanner" not in out, out
    code, out = kav(*_install_args(root, "--answers", str(answers)))
    assert code == 0, out
    svc = pcf.find_service((root / "etc/postfix/master.cf").read_text(), "127.0.0.1:10025/inet")
    assert svc is not None and "spawn" in svc.fields and "--stdio" in svc.text and "user=kluser" in svc.text
    assert "ListenAddress=stdio" in (root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf").read_text()
    _postfix_check(root, before)


def test_reconfigure_keeps_a_recorded_spawn_form(tmp_path: Path) -> None:
    """An installation made in the spawn form (the default before issue 20) keeps it when the
    package is upgraded: postinst runs ``kavsetup reconfigure`` with only the answers debconf was
    given this time (none here), which starts from the answers in the journal."""
    root = _root(tmp_path, "debian-bookworm")
    answers = tmp_path / "answers.yaml"
    answers.write_text("postfix_mode: spawn\n")
    assert kav(*_install_args(root, "--answers", str(answers)))[0] == 0
    installed = snapshot(root)
    code, out = kav("reconfigure", "--root", str(root), "--non-interactive")
    assert code == 0 and "nothing to change" in out, out
    assert diff_snapshots(installed, snapshot(root)) == []
    master = (root / "etc/postfix/master.cf").read_text()
    assert pcf.find_service(master, "127.0.0.1:10025/inet") is not None
    # the admin can still move to the new default explicitly
    answers.write_text("postfix_mode: daemon\n")
    code, out = kav("reconfigure", "--root", str(root), "--non-interactive", "--answers", str(answers))
    assert code == 0, out
    assert pcf.find_service((root / "etc/postfix/master.cf").read_text(), "127.0.0.1:10025/inet") is None
    conf = (root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf").read_text()
    assert "ListenAddress=inet:127.0.0.1:10025" in conf


def test_reconfigure_between_daemon_and_proxy_forms(tmp_path: Path) -> None:
    """daemon -> proxy moves the filter from main.cf's content_filter to the smtpd services (and
    back); uninstall after both still gives the original files byte for byte."""
    root = _root(tmp_path, "debian-bookworm")
    original = snapshot(root)
    assert kav(*_install_args(root))[0] == 0
    answers = tmp_path / "answers.yaml"
    answers.write_text("postfix_mode: proxy\n")
    code, out = kav("reconfigure", "--root", str(root), "--non-interactive", "--answers", str(answers))
    assert code == 0, out
    main, master = (root / "etc/postfix/main.cf").read_text(), (root / "etc/postfix/master.cf").read_text()
    assert pcf.get_param(main, "content_filter") is None
    assert "smtpd_proxy_filter=127.0.0.1:10025" in pcf.find_service(master, "smtp/inet").text
    answers.write_text("postfix_mode: daemon\n")
    code, out = kav("reconfigure", "--root", str(root), "--non-interactive", "--answers", str(answers))
    assert code == 0, out
    main, master = (root / "etc/postfix/main.cf").read_text(), (root / "etc/postfix/master.cf").read_text()
    assert pcf.get_param(main, "content_filter") == "kavscan:[127.0.0.1]:10025"
    assert "smtpd_proxy_filter" not in master
    assert kav("uninstall", "--root", str(root))[0] == 0
    assert diff_snapshots(original, snapshot(root)) == []


def test_bad_answers_file_is_one_line(tmp_path: Path) -> None:
    root = _root(tmp_path, "debian-bookworm")
    answers = tmp_path / "a.yaml"
    answers.write_text("protcol: smtp\n")
    code, out = kav(*_install_args(root, "--answers", str(answers)))
    assert code == 2 and "protcol: unknown answer" in out and len(out.strip().splitlines()) == 1


def test_kavadministrators_from_aliases(tmp_path: Path) -> None:
    main, master = _case_files("debian-bookworm")
    root = make_root(tmp_path, {"/etc/postfix/main.cf": main, "/etc/postfix/master.cf": master,
                                "/etc/aliases": "mailer-daemon: postmaster\npostmaster: root,\n  alice@example.org\n"})
    assert kav(*_install_args(root))[0] == 0
    conf = (root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf").read_text()
    assert "Recipients=^postmaster@.*$,^root@.*$,^alice@example\\.org$" in conf


def test_uninstall_when_nothing_installed(tmp_path: Path) -> None:
    root = _root(tmp_path, "debian-bookworm")
    assert kav("uninstall", "--root", str(root)) == (0, "kav4mailservers is not integrated with any MTA here; "
                                                       "nothing to uninstall\n")
    assert kav("status", "--root", str(root))[0] == 0


@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
def test_debian_root_real_postfix_check(tmp_path: Path, suite: str) -> None:
    """Auto-detection, install, the root's own ``postfix check`` (run by install's verify step
    through chroot), uninstall — on a Debian root with postfix really installed."""
    from tests.support.integration import Overlay, cached_root, snapshot_paths

    lower = cached_root(f"{suite}-postfix")
    if lower is None:
        pytest.skip(f"no {suite} postfix root in ~/.cache/kav4ms/roots (built by tests/distro-matrix)")
    watch = ["/etc/postfix", "/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/kav",
             "/var/spool/filter", "/var/lib/kav"]
    with Overlay(lower, tmp_path) as root:
        original = snapshot_paths(root, watch)
        code, out = kav("install", "--root", str(root), "--non-interactive")
        assert code == 0, out
        assert "postfix check passed" in out
        r = subprocess.run(["chroot", str(root), "postconf", "-h", "content_filter"], capture_output=True,
                           text=True, check=False)
        assert r.stdout.strip() == "kavscan:[127.0.0.1]:10025"
        code, out = kav("uninstall", "--root", str(root))
        assert code == 0, out
        assert diff_snapshots(original, snapshot_paths(root, watch)) == []


def test_second_run_is_locked_out(tmp_path: Path) -> None:
    import fcntl

    root = _root(tmp_path, "debian-bookworm")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, out = kav(*_install_args(root))
        assert code == 3 and "another kavsetup run holds the lock" in out
    finally:
        os.close(fd)
    assert kav(*_install_args(root))[0] == 0


def test_listening_socket_on_live_system_moves_the_ports() -> None:
    """With root /, a port something already listens on is taken (no tree is written here:
    taken_ports only reads)."""
    import socket
    from pathlib import PurePosixPath

    from kavsetup.detect.model import MTAInfo, MTAKind, PostfixInfo
    from kavsetup.integrate.files import Root
    from kavsetup.integrate.settings import IntegrationSettings as Settings
    from kavsetup.integrate.site import taken_ports
    from kavsetup.mta.common import choose_ports

    d = PurePosixPath("/nonexistent-kav-test")
    info = PostfixInfo(None, d, None, None, None, d / "main.cf", d / "master.cf", False, False, "postfix",
                       "postdrop", "")
    mta = MTAInfo(MTAKind.POSTFIX, True, True, None, "", None, None, None, info)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        s = Settings(filter_port=port, reinject_port=port + 1)
        taken = taken_ports(Root("/"), mta, s)
        assert port in taken
        f, r = choose_ports(s.with_(taken_ports=taken))
        assert f != port and r != port and f != r and f not in taken and r not in taken


def test_interactive_questions(tmp_path: Path) -> None:
    """Without --non-interactive on a terminal, install runs the console setup (guide 3.4,
    tests/setup) and uses the answers."""
    from tests.support.setup import answer_all, finish, spawn

    root = _root(tmp_path, "debian-bookworm")
    args = [a for a in _install_args(root) if a != "--non-interactive"]
    child = spawn(*args)
    asked = answer_all(child, {"protocol": "smtp", "admin_address": "av@example.org"})
    assert finish(child) == 0
    assert asked[:4] == ["postfix_mode", "protocol", "domains", "admin_address"]
    conf = (root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf").read_text()
    assert "Protocol=smtp" in conf and "AdminAddress=av@example.org" in conf
