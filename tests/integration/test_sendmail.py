"""Sendmail integration (guide 4.4.1) on every sendmail.cf of the corpus and on Debian's real
sendmail in a root built by the distro-matrix helper (then verified by ``sendmail -bt``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import corpus
from tests.support.integration import (
    CORPUS,
    Overlay,
    cached_root,
    diff_snapshots,
    kav,
    make_root,
    snapshot,
    snapshot_paths,
    step_count,
)

pytestmark = pytest.mark.root

def _has_cf(p: Path) -> bool:
    return (p / "sendmail.cf").exists()


CASES = corpus.params("sendmail", _has_cf)


def _root(tmp_path: Path, case: str) -> Path:
    d = CORPUS / "sendmail" / case
    return make_root(tmp_path, {f"/etc/mail/{f.name}": f for f in d.iterdir() if f.is_file()})


def _args(root: Path, *extra: str) -> list[str]:
    return ["install", "--root", str(root), "--mta", "sendmail", "--mta-config", "/etc/mail/sendmail.cf",
            "--non-interactive", *extra]


@pytest.mark.parametrize("case", CASES)
def test_round_trip(tmp_path: Path, case: str) -> None:
    root = _root(tmp_path, case)
    original = snapshot(root)
    code, out = kav(*_args(root, "--dry-run"))
    assert code == 0, out
    assert "+Msmtpscanner,\tP=/opt/kav/5.5/kav4mailservers/bin/smtpscanner" in out
    assert diff_snapshots(original, snapshot(root)) == []
    code, out = kav(*_args(root))
    assert code == 0, out
    cf = (root / "etc/mail/sendmail.cf").read_bytes()
    listen = (root / "etc/mail/sendmail.cf.listen").read_text("utf-8", "surrogateescape").splitlines()
    i = next(n for n, ln in enumerate(listen) if ln.startswith("SParseLocal"))
    assert listen[i + 2].startswith("R$*\t\t\t$#smtpscanner $@ localhost $: $1")
    assert "O QueueDirectory=/var/spool/mqueue-kav" in listen and "O PidFile=/run/sendmail-kav-listen.pid" in listen
    assert (root / "etc/mail/sendmail.cf").read_bytes() == cf  # the delivering config is untouched
    conf = (root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf").read_text()
    assert "ForwardMailer=smtp:127.0.0.1:10026" in conf
    unit = (root / "etc/systemd/system/kav4ms-sendmail-deliver.service").read_text()
    assert "Addr=127.0.0.1,Port=10026" in unit
    installed = snapshot(root)
    assert "nothing to do" in kav(*_args(root))[1]
    assert diff_snapshots(installed, snapshot(root)) == []
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0, out
    assert diff_snapshots(original, snapshot(root)) == []


def test_admin_edit_of_generated_listen_file_is_kept(tmp_path: Path) -> None:
    corpus.require()
    root = _root(tmp_path, corpus.cases("sendmail", _has_cf)[0])
    assert kav(*_args(root))[0] == 0
    listen = root / "etc/mail/sendmail.cf.listen"
    listen.write_text(listen.read_text("utf-8", "surrogateescape") + "# admin note\n", "utf-8", "surrogateescape")
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0 and "sendmail.cf.listen: changed since install; left as it is" in out
    assert listen.exists()


@pytest.mark.parametrize("case", CASES)
def test_crash_after_every_step_then_recover(tmp_path: Path, case: str) -> None:
    probe = _root(tmp_path / "probe", case)
    assert kav(*_args(probe))[0] == 0
    for k in range(1, step_count(probe) + 1):
        root = _root(tmp_path / f"k{k}", case)
        original = snapshot(root)
        assert kav(*_args(root), fail_after=k)[0] == -9
        code, out = kav("recover", "--root", str(root))
        assert code == 0, out
        assert diff_snapshots(original, snapshot(root)) == [], f"crash after step {k}"


WATCH = ["/etc/mail", "/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/kav", "/opt/kav",
         "/etc/systemd/system", "/var/spool/filter", "/var/spool/mqueue-kav", "/var/lib/kav"]


@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
def test_debian_root_real_sendmail_verifies(tmp_path: Path, suite: str) -> None:
    lower = cached_root(f"{suite}-sendmail")
    if lower is None:
        pytest.skip(f"no {suite} sendmail root in ~/.cache/kav4ms/roots (built by tests/distro-matrix)")
    with Overlay(lower, tmp_path) as root:
        original = snapshot_paths(root, WATCH)
        code, out = kav("install", "--root", str(root), "--non-interactive")
        assert code == 0, out
        assert "sendmail -bt routes mail to smtpscanner" in out
        r = subprocess.run(["chroot", str(root), "/usr/sbin/sendmail", "-bt", "-C", "/etc/mail/sendmail.cf"],
                           input="3,0 postmaster@example.com\n", capture_output=True, text=True, check=False)
        assert "smtpscanner" not in r.stdout  # the delivering config still delivers
        code, out = kav("uninstall", "--root", str(root))
        assert code == 0, out
        assert diff_snapshots(original, snapshot_paths(root, WATCH)) == []


@pytest.mark.corpus
def test_too_old_sendmail_refused_in_one_line(tmp_path: Path) -> None:
    corpus.require()
    root = _root(tmp_path, "05-AudensAurantius__etckeeper")
    cf = root / "etc/mail/sendmail.cf"
    cf.write_text(cf.read_text().replace("DZ8.17.1.9/Debian-2+deb12u2", "DZ7.3"))
    original = snapshot(root)
    code, out = kav(*_args(root))
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert "sendmail 7.3" in out and "need sendmail 8.x" in out
    assert diff_snapshots(original, snapshot(root)) == []
    code, out = kav(*_args(root, "--force"))
    assert code == 0, out
