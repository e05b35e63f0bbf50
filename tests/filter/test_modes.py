"""Inputs and extensions: DSN/XFORWARD/8BITMIME pass-through, spawned over stdio (socket as with
Postfix spawn, pipes as with Exim's lmtp transport), qmail-queue replacement, quarantine command."""

from __future__ import annotations

import email
import os
import smtplib
import socket
import stat
import subprocess
import sys
from pathlib import Path

from tests.support.filter import EICAR, REPO, eicar_mail, mail

BOB = "bob@example.com"


def test_dsn_xforward_8bitmime_passed_unchanged(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, general={"EHLOsupportDSN": True, "EHLOsupport8BITMIME": True,
                                              "EHLOsupportXFORWARD": True, "EHLOattrsXFORWARD": "NAME ADDR HELO"})
    with smtplib.SMTP("127.0.0.1", st.port) as c:
        c.ehlo("mta.example.com")
        for ext in ("dsn", "8bitmime", "xforward", "pipelining", "size"):
            assert c.has_extn(ext), ext
        assert c.esmtp_features["xforward"].split() == ["NAME", "ADDR", "HELO"]
        assert c.docmd("XFORWARD", "NAME=client.example.org ADDR=192.0.2.7 HELO=[client]")[0] == 250
        c.sendmail("alice@example.com", [BOB], mail("dsn"), ["RET=HDRS", "ENVID=QQ.MixedCase+2B1", "BODY=8BITMIME"],
                   ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob@Example.com"])
    (copy,) = st.sink.deliveries()
    assert "ENVID=QQ.MixedCase+2B1" in copy.mail_options and "RET=HDRS" in copy.mail_options
    assert "BODY=8BITMIME" in copy.mail_options
    assert copy.rcpt_options == ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob@Example.com"]
    assert st.sink.xforward == ["NAME=client.example.org ADDR=192.0.2.7 HELO=[client]"]
    assert st.sink.xforward_batched == [True]  # pipelined with MAIL/RCPT/DATA: one round trip
    # without EHLOsupportDSN the extension is neither offered nor accepted
    st2 = make_stack({"default": {}})
    with smtplib.SMTP("127.0.0.1", st2.port) as c:
        c.ehlo()
        assert not c.has_extn("dsn") and not c.has_extn("xforward") and not c.has_extn("8bitmime")
        assert c.docmd("MAIL FROM:<a@example.com> ENVID=x")[0] == 555


def test_a_next_hop_refusing_xforward_gets_nothing_and_the_client_keeps_the_mail(make_stack) -> None:  # noqa: ANN001
    """XFORWARD goes out in one pipelined batch with MAIL, RCPT and DATA.  When the next hop refuses
    it, the DATA it may already have opened is abandoned (the session is dropped before any final
    dot): nothing is delivered and the client gets a 4xx, as before the batching."""
    st = make_stack({"default": {}}, general={"EHLOsupportXFORWARD": True, "EHLOattrsXFORWARD": "NAME ADDR"})
    st.sink.mode = "refuse_xforward"

    def send() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", st.port) as c:
            c.ehlo("mta.example.com")
            assert c.docmd("XFORWARD", "NAME=client.example.org ADDR=192.0.2.7")[0] == 250
            c.mail("alice@example.com")
            c.rcpt(BOB)
            return c.data(mail("xforward refused"))

    code, _ = send()
    assert 400 <= code < 500
    assert st.sink.xforward == ["NAME=client.example.org ADDR=192.0.2.7"]
    assert st.sink.got == []
    st.sink.mode = "ok"
    assert send()[0] == 250
    assert len(st.sink.deliveries()) == 1


def _spawn(st, stdin, stdout) -> subprocess.Popen[bytes]:  # noqa: ANN001
    return subprocess.Popen([sys.executable, "-m", "runtime.filter.main", "-c", str(st.conf)], stdin=stdin,
                            stdout=stdout, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))


def _lmtp_dialog(write, readline) -> list[bytes]:  # noqa: ANN001
    def reply() -> bytes:
        while True:
            line = readline()
            if not line or line[3:4] != b"-":
                return line

    out = [reply()]
    for cmd in (b"LHLO mta", b"MAIL FROM:<alice@example.com>", b"RCPT TO:<bob@example.com>",
                b"RCPT TO:<carol@example.com>", b"DATA"):
        write(cmd + b"\r\n")
        out.append(reply())
    write(eicar_mail("EICAR").replace(b"\r\n.", b"\r\n..") + b".\r\n")
    out += [reply(), reply()]  # LMTP: one reply per recipient
    write(b"QUIT\r\n")
    out.append(reply())
    return out


def test_spawned_over_a_socket_like_postfix_spawn(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, general={"Protocol": "lmtp"})
    ours, theirs = socket.socketpair()
    proc = _spawn(st, theirs, theirs)
    theirs.close()
    f = ours.makefile("rb")
    lines = _lmtp_dialog(ours.sendall, f.readline)
    assert proc.wait(20) == 0
    assert lines[0].startswith(b"220") and lines[-3].startswith(b"250") and lines[-2].startswith(b"250")
    (copy,) = st.sink.deliveries()
    assert copy.rcpts == [BOB, "carol@example.com"] and EICAR not in copy.data


def test_spawned_over_pipes_like_exim_lmtp_transport(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, general={"Protocol": "lmtp"})
    proc = _spawn(st, subprocess.PIPE, subprocess.PIPE)
    assert proc.stdin and proc.stdout

    def write(b: bytes) -> None:
        proc.stdin.write(b)
        proc.stdin.flush()

    lines = _lmtp_dialog(write, proc.stdout.readline)
    proc.stdin.close()
    assert proc.wait(20) == 0
    assert lines[-3].startswith(b"250") and lines[-2].startswith(b"250") and lines[-1].startswith(b"221")
    assert len(st.sink.deliveries()) == 1


def _qmail_queue(st, message: bytes, envelope: bytes) -> int:  # noqa: ANN001
    env_r, env_w = os.pipe()
    os.write(env_w, envelope)
    os.close(env_w)
    proc = subprocess.Popen([sys.executable, "-m", "runtime.filter.main", "-c", str(st.conf), "qmail-queue"],
                            stdin=subprocess.PIPE, stdout=env_r, env=dict(os.environ, PYTHONPATH=str(REPO)))
    os.close(env_r)
    proc.communicate(message, timeout=30)
    return proc.returncode


def test_qmail_queue_replacement(make_stack, tmp_path) -> None:  # noqa: ANN001
    # A stand-in for the original qmail-queue (queue.kav55) honouring qmail-queue(8): message on
    # fd 0, envelope on fd 1, exit 0 when queued.  qmail is not packaged in Debian.
    queue = tmp_path / "queue"
    queue.mkdir()
    original = tmp_path / "queue.kav55"
    original.write_text(f"""#!{sys.executable}
import os, sys
msg = sys.stdin.buffer.read()
env = b""
while chunk := os.read(1, 65536):
    env += chunk
n = len(os.listdir({str(queue)!r})) // 2
open(os.path.join({str(queue)!r}, f"{{n}}.msg"), "wb").write(msg)
open(os.path.join({str(queue)!r}, f"{{n}}.env"), "wb").write(env)
""")
    original.chmod(0o755)
    st = make_stack({"default": {"AdminNotify": False, "RecipientNotify": False}},
                    general={"ForwardMailer": f"qmail:({original})"})
    envelope = b"Falice@example.com\0Tbob@example.com\0Tcarol@example.com\0\0"
    assert _qmail_queue(st, eicar_mail("EICAR").replace(b"\r\n", b"\n"), envelope) == 0
    assert (queue / "0.env").read_bytes() == envelope, "the envelope reaches queue.kav55 unchanged"
    assert EICAR not in (queue / "0.msg").read_bytes() and b"X-Anti-Virus:" in (queue / "0.msg").read_bytes()
    assert b"\r\n" not in (queue / "0.msg").read_bytes(), "qmail queues LF text"
    assert _qmail_queue(st, b"x", b"Fa\0") == 91, "envelope format error"
    st.kill_ave()
    n = len(os.listdir(queue))
    assert _qmail_queue(st, mail("x").replace(b"\r\n", b"\n"), envelope) == 71, "temporary: qmail keeps it"
    assert len(os.listdir(queue)) == n


def _q(st, *args: str) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "runtime.filter.main", "-c", str(st.conf), "quarantine", *args],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=30)


def test_quarantine_list_show_release_delete(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, start=False)
    st.write({"default": {"QuarantinePath": st.quarantine, "Quarantine": True, "InfectedQuarantine": True,
                          "SuspiciousQuarantine": True, "AdminNotify": False, "RecipientNotify": False}})
    st.start()
    first_mail = eicar_mail("EICAR", subject="first")
    st.send(first_mail, rcpts=[BOB, "carol@example.com"])
    st.send(eicar_mail("SUSP", subject="second"))
    st.send(first_mail, rcpts=[BOB, "carol@example.com"])  # the same message again (a retry): stored once
    listing = _q(st, "list").stdout.strip().splitlines()
    assert len(listing) == 2, listing
    first = next(line.split()[0] for line in listing if "first" in line)
    shown = _q(st, "show", first).stdout
    assert "sender: <alice@example.com>" in shown and "recipients: bob@example.com, carol@example.com" in shown
    assert "EICAR-Test-File" in shown and "Subject: first" in shown
    raw = _q(st, "show", "--raw", first).stdout.encode()
    assert EICAR in b"".join(p.get_payload(decode=True) or b"" for p in email.message_from_bytes(raw).walk())
    st.sink.got.clear()
    released = _q(st, "release", first)
    assert released.returncode == 0, released.stderr
    (copy,) = st.sink.got
    assert copy.rcpts == [BOB, "carol@example.com"] and copy.sender == "alice@example.com"
    assert copy.data.replace(b"\r\n", b"\n") == raw, "release re-sends the original message"
    assert len(_q(st, "list").stdout.strip().splitlines()) == 1
    second = _q(st, "list").stdout.split()[0]
    assert _q(st, "delete", second).returncode == 0
    assert _q(st, "list").stdout.strip() == ""
    bad = _q(st, "show", "../../etc/passwd")
    assert bad.returncode == 1 and "no such quarantine entry" in bad.stderr
    assert stat.S_IMODE(st.quarantine.stat().st_mode) == 0o700


def test_swaks_as_the_client(make_stack, tmp_path) -> None:  # noqa: ANN001
    import shutil

    swaks = shutil.which("swaks")
    if swaks is None:  # pragma: no cover - installed by the lead (Debian package swaks)
        import pytest

        pytest.skip("swaks is not installed")
    st = make_stack({"default": {}})
    eml = tmp_path / "m.eml"
    eml.write_bytes(eicar_mail("CURE"))
    res = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(st.port), "--from", "alice@example.com",
                          "--to", BOB, "--data", f"@{eml}", "--pipeline"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "<-  250 2.0.0 Ok: scanned and passed on" in res.stdout
    (copy,) = st.sink.deliveries()
    assert copy.msg["X-Anti-Virus"].endswith(" infected"), "no Cured* key in the group: no cure mode (6.1.2)"


def test_forward_to_a_program_over_stdio(make_stack, tmp_path) -> None:  # noqa: ANN001
    """ForwardMailer=smtp:(command): SMTP over a program's stdin/stdout (like `sendmail -bs`).
    The program here is a second smtpscanner spawned with --stdio that forwards to the sink."""
    st = make_stack({"default": {}})
    inner = tmp_path / "inner.conf"
    inner.write_text(st.conf.read_text().replace("ListenAddress=inet", "ListenAddress=stdio\n#"))
    st.stop()
    command = f"{sys.executable} -m runtime.filter.main -c {inner} --stdio"
    st.write({"default": {}}, general={"ForwardMailer": f"smtp:({command})"})
    st.start()
    assert st.send(eicar_mail("EICAR"))[BOB][0] == 250
    (copy,) = st.sink.deliveries()
    assert EICAR not in copy.data and copy.rcpts == [BOB]


def test_forward_over_lmtp_to_postfix_smtp_sink(make_stack, tmp_path) -> None:  # noqa: ANN001
    import shutil
    import time

    from tests.support.filter import free_port

    if shutil.which("smtp-sink") is None:  # pragma: no cover - Postfix is installed here
        import pytest

        pytest.skip("Postfix's smtp-sink is not installed")
    import tempfile

    dump = Path(tempfile.mkdtemp(prefix="kav-lmtp-sink."))  # smtp-sink writes as nobody: not under tmp_path
    dump.chmod(0o777)  # noqa: S103
    port = free_port()
    sink = subprocess.Popen(["smtp-sink", "-L", "-u", "nobody", "-d", f"{dump}/%M.", f"127.0.0.1:{port}", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        st = make_stack({"default": {"AdminNotify": False, "RecipientNotify": False}},
                        general={"ForwardMailer": f"lmtp:127.0.0.1:{port}"})
        replies = st.send(eicar_mail("EICAR"), rcpts=[BOB, "carol@example.com"])
        assert all(code == 250 for code, _ in replies.values())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not list(dump.iterdir()):
            time.sleep(0.1)
        (f,) = list(dump.iterdir())
        text = f.read_bytes()
        assert b"X-Anti-Virus:" in text and EICAR not in text
        assert b"X-Rcpt-Args: <bob@example.com>" in text and b"X-Rcpt-Args: <carol@example.com>" in text
    finally:
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(dump, ignore_errors=True)


def test_prefork_daemon_on_a_unix_socket(make_stack, tmp_path) -> None:  # noqa: ANN001
    import time

    st = make_stack({"default": {}}, start=False)
    path = tmp_path / "smtpscanner.sock"
    st.write({"default": {}}, general={"ListenAddress": f"unix:{path}"})
    st.start_ave()
    with open(st.root / "log" / "smtpscanner.err", "ab") as err:
        st.scanner = subprocess.Popen([sys.executable, "-m", "runtime.filter.main", "-c", str(st.conf), "--daemon",
                                       "--processes", "2"], env=st.env(), stdin=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 20
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stat.S_ISSOCK(path.stat().st_mode)
    for i in range(6):
        with smtplib.SMTP() as c:
            c.sock = socket.socket(socket.AF_UNIX)
            c.sock.connect(str(path))
            c.file = None
            assert c.getreply()[0] == 220
            c.sendmail("alice@example.com", [BOB], mail(f"unix {i}"))
    assert len(st.sink.deliveries()) == 6
    st.scanner.terminate()
    assert st.scanner.wait(30) == 0
    assert not path.exists(), "socket removed at stop"
