"""Issue 11 item 4: qmail's qmail-queue without a set-uid script. ``kavqmailqueue`` runs as an
unprivileged submitter (here ``nobody``, as qmaild or a local user would), hands message and
envelope to the running smtpscanner over its UNIX socket, and maps the answer to qmail-queue(8)'s
exit codes; smtpscanner passes clean mail to the original program (the qmail stand-in,
tests/integration/qmail_standin, renamed queue.kav55 as kavsetup does)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.filter import REPO, Sink, Stack
from tests.support.procs import can_connect, wait_for

STANDIN = REPO / "tests/integration/qmail_standin/qmail-queue"
USER = "nobody"
CLEAN = b"From: a@example.com\nTo: b@example.com\nSubject: hello\n\nclean body\n"
SIGNED = b"From: a@example.com\nTo: b@example.com\nSubject: sig\n\nkav4test--signature body\n"


class QmailStack(Stack):
    @property
    def qhome(self) -> Path:
        return self.root / "qmail"

    @property
    def listen(self) -> Path:
        return self.root / "run" / "qmail-queue.sock"

    def start_scanner(self) -> None:
        with open(self.root / "log" / "smtpscanner.err", "ab") as err:
            self.scanner = subprocess.Popen(
                [sys.executable, "-m", "runtime.filter.main", "-c", str(self.conf), "--daemon"],
                env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: can_connect(str(self.listen)) or self.scanner.poll() is not None, what="smtpscanner")
        assert self.scanner.poll() is None, (self.root / "log" / "smtpscanner.err").read_text()

    def queued(self) -> list[bytes]:
        todo = self.qhome / "queue" / "todo"
        return [(self.qhome / "queue" / "mess" / e.name).read_bytes() for e in sorted(todo.iterdir())]


@pytest.fixture
def qstack() -> Iterator[QmailStack]:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the client as another uid")
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        pytest.skip("no /usr/bin/python3 for the unprivileged client")
    root = Path(tempfile.mkdtemp(prefix="kav-qmail-client.", dir="/tmp"))
    os.chmod(root, 0o755)  # noqa: S103 - the unprivileged submitter reaches the socket through it
    st = QmailStack(root, Sink().start())
    for d in ("bin", "queue/mess", "queue/intd", "queue/todo"):
        (st.qhome / d).mkdir(parents=True)
    shutil.copyfile(STANDIN, st.qhome / "bin" / "queue.kav55")
    os.chmod(st.qhome / "bin" / "queue.kav55", 0o755)  # noqa: S103 - a program
    st.write({"default": {"Check": True, "RecipientAction": "remove", "AdminNotify": False,
                          "SenderNotify": False, "RecipientNotify": False}},
             general={"ListenAddress": f"unix:{st.listen}",
                      "ForwardMailer": f"qmail:({st.qhome}/bin/queue.kav55)"})
    os.chmod(root / "run", 0o755)  # noqa: S103 - as /run/kav4mailservers: the socket itself is 0666
    st.start()
    yield st
    st.stop()
    st.sink.stop()
    shutil.rmtree(root, ignore_errors=True)


def _queue(st: QmailStack, message: bytes, envelope: bytes, user: str | None = USER) -> int:
    """Run kavqmailqueue as qmail-smtpd would: message on fd 0, envelope on fd 1."""
    r, w = os.pipe()
    os.write(w, envelope)
    os.close(w)
    try:
        proc = subprocess.run(["/usr/bin/python3", "-m", "runtime.filter.qmailclient", "--socket", str(st.listen),
                               "--timeout", "30"], input=message, stdout=r, stderr=subprocess.PIPE, cwd="/",
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60,
                              user=user, group="nogroup" if user else None, extra_groups=[] if user else None)
    finally:
        os.close(r)
    return proc.returncode


def test_an_unprivileged_submitter_queues_clean_mail_through_the_filter(qstack: QmailStack) -> None:
    assert _queue(qstack, CLEAN, b"Fa@example.com\0Tb@example.com\0Tc@example.com\0\0") == 0
    queued = qstack.queued()
    assert len(queued) == 1
    assert b"clean body" in queued[0] and b"X-Anti-Virus:" in queued[0]
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True).stdout)
    assert f"invoked by uid {uid}".encode() in queued[0]  # the submitter is still on record
    env = (qstack.qhome / "queue" / "intd" / sorted((qstack.qhome / "queue/todo").iterdir())[0].name).read_bytes()
    assert b"Fa@example.com\0Tb@example.com\0Tc@example.com\0" in env


def test_infected_mail_is_handled_by_the_filter_not_queued_as_sent(qstack: QmailStack) -> None:
    assert _queue(qstack, SIGNED, b"Fa@example.com\0Tb@example.com\0\0") == 0
    assert all(b"kav4test--signature" not in m for m in qstack.queued())


def test_aveserver_down_is_a_temporary_refusal(qstack: QmailStack) -> None:
    qstack.kill_ave()
    assert _queue(qstack, CLEAN, b"Fa@example.com\0Tb@example.com\0\0") == 71
    assert qstack.queued() == []


def test_no_running_smtpscanner_is_a_temporary_connection_failure(qstack: QmailStack) -> None:
    qstack.stop()
    assert _queue(qstack, CLEAN, b"Fa@example.com\0Tb@example.com\0\0") == 73
    assert qstack.queued() == []


def test_malformed_envelopes_and_long_addresses_are_refused_with_their_codes(qstack: QmailStack) -> None:
    for envelope in (b"", b"Xa\0Tb\0\0", b"Fa\0\0", b"Fa\0Tb\0", b"Fa\0b\0\0"):
        assert _queue(qstack, CLEAN, envelope) == 91, envelope
    assert _queue(qstack, CLEAN, b"Fa@example.com\0T" + b"x" * 1001 + b"@example.com\0\0") == 11
    assert qstack.queued() == []
