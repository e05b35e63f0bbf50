"""Qmail integration (guide 4.4.2) on a qmail tree built around the qmail-queue stand-in
(qmail_standin/README.md) plus every file of the qmail corpus in the place qmail keeps it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import corpus
from tests.support.integration import CORPUS, diff_snapshots, kav, make_root, snapshot, step_count

pytestmark = pytest.mark.root

STANDIN = Path(__file__).parent / "qmail_standin" / "qmail-queue"
QMAILQ, QMAIL = 205, 201  # tests.support.integration.PASSWD / GROUP

# Where each corpus file lives on a qmail system (Debian's qmail-run layout / s6 services).
PLACES = {
    "aliases": "/etc/aliases", "concurrencyincoming": "/var/qmail/control/concurrencyincoming",
    "defaultdelivery": "/var/qmail/control/defaultdelivery", "tcp.smtp": "/etc/tcp.smtp",
    "qmail-rc": "/var/qmail/rc", "run-qmail-send": "/etc/sv/qmail-send/run",
    "run-qmail-smtpd": "/etc/sv/qmail-smtpd/run", "log-qmail-send": "/etc/sv/qmail-send/log/run",
    "log-qmail-smtpd": "/etc/sv/qmail-smtpd/log/run", "log-qmail-verify": "/etc/sv/qmail-verify/log/run",
}


def _corpus_files(case: str) -> dict[str, Path | bytes | str]:
    d = CORPUS / "qmail" / case
    out: dict[str, Path | bytes | str] = {}
    for f in sorted(p for p in d.rglob("*") if p.is_file()):
        rel = str(f.relative_to(d))
        out[PLACES.get(rel, "/" + rel if "/" in rel else f"/var/qmail/control/{rel}")] = f
    return out


CASES = ["plain", *corpus.params("qmail")]


def _root(tmp_path: Path, case: str) -> Path:
    files: dict[str, Path | bytes | str] = {
        "/var/qmail/bin/qmail-queue": STANDIN,
        "/var/qmail/control/me": "mx.example.org\n",
        "/var/qmail/alias/.qmail-postmaster": "&hostmaster@example.org\nroot\n",
    }
    if case != "plain":
        files.update(_corpus_files(case))
    root = make_root(tmp_path, files)
    q = root / "var/qmail/bin/qmail-queue"
    os.chown(q, QMAILQ, QMAIL)
    os.chmod(q, 0o4711)  # noqa: S103 - qmail-queue is set-uid qmailq by design (guide 4.4.2)
    for sub in ("mess", "intd", "todo"):
        (root / "var/qmail/queue" / sub).mkdir(parents=True)
    return root


def _args(root: Path, *extra: str) -> list[str]:
    return ["install", "--root", str(root), "--mta", "qmail", "--mta-config", "/var/qmail",
            "--non-interactive", *extra]


def queue_through(program: Path, message: bytes, envelope: bytes, env: dict[str, str] | None = None) -> int:
    """Run a qmail-queue(8) program: message on fd 0, envelope on fd 1."""
    r, w = os.pipe()
    os.write(w, envelope)
    os.close(w)
    try:
        p = subprocess.run([str(program)], input=message, stdout=r, env=env, check=False, timeout=30)
    finally:
        os.close(r)
    return p.returncode


@pytest.mark.parametrize("case", CASES)
def test_round_trip_and_envelope_through_queue_kav55(tmp_path: Path, case: str) -> None:
    root = _root(tmp_path, case)
    original = snapshot(root)
    code, out = kav(*_args(root, "--dry-run"))
    assert code == 0 and "rename /var/qmail/bin/qmail-queue -> /var/qmail/bin/queue.kav55" in out, out
    assert diff_snapshots(original, snapshot(root)) == []

    code, out = kav(*_args(root))
    assert code == 0, out
    aside = root / "var/qmail/bin/queue.kav55"
    st = aside.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o4711, QMAILQ, QMAIL)
    assert aside.read_bytes() == STANDIN.read_bytes()
    wrapper_path = root / "var/qmail/bin/qmail-queue"
    wrapper = wrapper_path.read_text()
    # issue 11: no set-uid script; the wrapper is a client of smtpscanner's socket
    assert "exec /opt/kav/5.5/kav4mailservers/bin/kavqmailqueue --socket /run/kav4mailservers/" in wrapper
    assert wrapper_path.stat().st_mode & 0o7777 == 0o755
    conf_path = root / "etc/kav/5.5/kav4mailservers/kav4mailservers.conf"
    assert conf_path.stat().st_mode & 0o7777 == 0o640
    conf = conf_path.read_text()
    assert "ListenAddress=unix:/run/kav4mailservers/qmail-queue.sock" in conf
    assert "Protocol=smtp" in conf  # kavqmailqueue is an SMTP client (smtplib)
    assert "ForwardMailer=qmail:(/var/qmail/bin/queue.kav55)" in conf
    assert "Recipients=^postmaster@.*$,^hostmaster@example\\.org$,^root@.*$" in conf
    # The renamed original still queues mail exactly as qmail-queue(8) says.
    assert queue_through(aside, b"Subject: t\n\nhello\n", b"Fa@example.org\0Tb@example.org\0\0") == 0
    todo = list((root / "var/qmail/queue/todo").iterdir())
    assert len(todo) == 1
    assert todo[0].read_bytes().endswith(b"Fa@example.org\0Tb@example.org\0\0")
    mess = (root / "var/qmail/queue/mess" / todo[0].name).read_bytes()
    assert mess.startswith(b"Received: (qmail ") and mess.endswith(b"\n\nhello\n")
    for sub in ("mess", "intd", "todo"):
        for f in (root / "var/qmail/queue" / sub).iterdir():
            f.unlink()

    code, out = kav(*_args(root))
    assert code == 0 and "nothing to do" in out
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0, out
    assert diff_snapshots(original, snapshot(root)) == []


def test_already_wrapped_is_refused(tmp_path: Path) -> None:
    root = _root(tmp_path, "plain")
    (root / "var/qmail/bin/queue.kav55").write_bytes(STANDIN.read_bytes())
    original = snapshot(root)
    code, out = kav(*_args(root))
    assert code == 2 and "already wrapped" in out
    assert diff_snapshots(original, snapshot(root)) == []


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


def test_wrapper_edited_by_admin_is_reported_not_guessed(tmp_path: Path) -> None:
    root = _root(tmp_path, "plain")
    assert kav(*_args(root))[0] == 0
    (root / "var/qmail/bin/qmail-queue").write_text("#!/bin/sh\nexec /usr/local/bin/other-filter\n")
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0
    assert "/var/qmail/bin/qmail-queue: changed since install; left as it is" in out
    # queue.kav55 was still ours: restored (removed), so qmail-queue is the admin's file.
    assert not (root / "var/qmail/bin/queue.kav55").exists()


@pytest.mark.parametrize(("envelope", "code"), [
    (b"Fa@x\0Tb@y\0\0", 0),
    (b"Tb@y\0\0", 91),                       # no F
    (b"Fa@x\0\0", 91),                       # no recipient
    (b"Fa@x\0Tb@y\0", 91),                   # missing terminator
    (b"Fa@x\0T" + b"b" * 1001 + b"\0\0", 11),  # address too long
])
def test_standin_contract(tmp_path: Path, envelope: bytes, code: int) -> None:
    root = _root(tmp_path, "plain")
    assert queue_through(root / "var/qmail/bin/qmail-queue", b"x\n", envelope) == code


def test_standin_refusal_codes(tmp_path: Path) -> None:
    root = _root(tmp_path, "plain")
    for want in (31, 71):
        env = dict(os.environ, QMAIL_STANDIN_REFUSE=str(want))
        assert queue_through(root / "var/qmail/bin/qmail-queue", b"x\n", b"Fa@x\0Tb@y\0\0", env) == want
    assert list((root / "var/qmail/queue/todo").iterdir()) == []
