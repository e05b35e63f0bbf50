"""smtpscanner's SIGHUP reload (issue 18 item 1: "save atomically, reload the daemons"), with the
real daemon in both standing modes (one process; pre-forked workers under the one Supervisor), a
real aveserver and a real SMTP sink: a changed group setting shows on the next message; a file
with a bad value is refused with file, line and key while the old configuration keeps serving; a
message in flight while the signal arrives is delivered once, under the configuration it started
with.  Spawned (--stdio) smtpscanners read the file per session and need nothing (docs)."""

from __future__ import annotations

import threading

import pytest

from tests.support.filter import Stack, eicar_mail
from tests.support.procs import children, wait_for

MODES = {"single": (), "prefork": ("--processes", "2")}


def _x_header(st: Stack, i: int = -1) -> str | None:
    return st.sink.got[i].msg["X-Anti-Virus"]


def _start(make_stack, mode: str, **group: object) -> Stack:  # noqa: ANN001
    st = make_stack({"default": {"AddXHeaders": True, **group}}, start=False)
    st.scanner_args = MODES[mode]
    st.start()
    wait_for(lambda: st.reload_state().get("pid") == st.scanner.pid, what="smtpscanner's state file")
    return st


def _rewrite(st: Stack, **group: object) -> None:
    """The whole file again (the same ports and paths) with the default group's keys changed."""
    st.write({"default": {"AddXHeaders": True, **group}})


@pytest.mark.parametrize("mode", MODES)
def test_sighup_applies_a_changed_setting_to_the_next_message(make_stack, mode: str) -> None:  # noqa: ANN001
    st = _start(make_stack, mode)
    assert st.reload_state()["generation"] == 1 and st.reload_state()["pid"] == st.scanner.pid
    assert int(st.pid_file.read_text()) == st.scanner.pid
    workers = set(children(st.scanner.pid))
    assert st.send(eicar_mail("clean"))["bob@example.com"][0] == 250
    assert _x_header(st) is not None

    _rewrite(st, AddXHeaders=False)
    state = st.reload_scanner()
    assert state["result"] == "reloaded" and state["generation"] == 2 and state["restart_needed"] == []
    assert f"configuration {st.conf} reloaded: generation 2 serves new connections" in st.log_text()
    assert st.send(eicar_mail("clean", subject="after"))["bob@example.com"][0] == 250
    assert _x_header(st) is None, "the reloaded AddXHeaders=no did not apply"
    assert st.scanner.poll() is None
    if mode == "prefork":  # a new generation of workers; the old ones leave once idle
        wait_for(lambda: workers.isdisjoint(children(st.scanner.pid)), what="the old workers to retire")
        assert len(children(st.scanner.pid)) == 2

    # a setting bound at start is reported, the rest still applies
    st.write({"default": {"AddXHeaders": True}}, general={"ListenAddress": "inet:127.0.0.1:9"})
    state = st.reload_scanner()
    assert state["result"] == "reloaded" and state["restart_needed"] == ["[smtpscan.general] ListenAddress"]
    assert "[smtpscan.general] ListenAddress changed: takes effect at the next restart" in st.log_text()
    assert st.send(eicar_mail("clean", subject="still on the old port"))["bob@example.com"][0] == 250
    assert _x_header(st) is not None


@pytest.mark.parametrize("mode", MODES)
def test_an_invalid_file_is_refused_and_the_old_configuration_keeps_serving(make_stack, mode: str) -> None:  # noqa: ANN001
    st = _start(make_stack, mode)
    text = st.conf.read_text()
    lines = text.splitlines()
    line = lines.index("AddXHeaders=yes") + 1
    st.conf.write_text(text.replace("AddXHeaders=yes", "AddXHeaders=perhaps"))
    state = st.reload_scanner()
    assert state["result"] == "refused" and state["generation"] == 1
    where = f"{st.conf}:{line}: [smtpscan.group:default] AddXHeaders:"
    assert where in str(state["message"])
    refused = [ln for ln in st.log_text().splitlines() if "reload refused" in ln]
    assert len(refused) == 1 and where in refused[0], refused  # one line, from the master only
    assert st.send(eicar_mail("clean"))["bob@example.com"][0] == 250
    assert _x_header(st) is not None  # still the old AddXHeaders=yes
    assert st.scanner.poll() is None


@pytest.mark.parametrize("mode", MODES)
def test_a_message_in_flight_during_sighup_is_delivered_once_under_its_configuration(make_stack, mode: str) -> None:  # noqa: ANN001
    st = _start(make_stack, mode)
    st.sink.delay = 3.0  # the next hop holds the message: it is mid-transaction when the signal comes
    answer: dict[str, tuple[int, bytes]] = {}
    sender = threading.Thread(target=lambda: answer.update(st.send(eicar_mail("clean", subject="in flight"))))
    sender.start()
    wait_for(lambda: st.sink.receiving == 1, what="the message to reach the sink")
    _rewrite(st, AddXHeaders=False)
    assert st.reload_scanner()["generation"] == 2
    sender.join(60)
    st.sink.delay = 0.0
    assert answer["bob@example.com"][0] == 250
    assert [g.msg["Subject"] for g in st.sink.got] == ["in flight"]  # once, not lost, not doubled
    assert _x_header(st) is not None  # finished under the configuration it started with
    assert st.send(eicar_mail("clean", subject="next"))["bob@example.com"][0] == 250
    assert [g.msg["Subject"] for g in st.sink.got] == ["in flight", "next"]
    assert _x_header(st) is None
    if mode == "prefork":
        wait_for(lambda: "retired after a reload" in st.log_text(), what="the old worker to leave")


def test_the_man_page_documents_the_reload_as_the_daemon_logs_it() -> None:
    """smtpscanner(8) (shipped by pkg/common/stage.py in place of the generated stub) quotes the
    log lines the daemon writes: a reworded log line must be re-documented."""
    import shutil
    import subprocess

    from runtime.filter.reloadstate import ReloadState
    from runtime.filter.serve import reload_line
    from tests.support.filter import REPO

    page = REPO / "docs/man/smtpscanner.8"
    if shutil.which("groff") is None:
        pytest.skip("groff not installed")
    out = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=400n", str(page)], capture_output=True,
                         text=True, check=True)
    text = " ".join(out.stdout.replace("\u2010", "-").split())
    ok = reload_line(ReloadState(1, "FILE", generation=7, result="reloaded"))
    refused = reload_line(ReloadState(1, "FILE", generation=7, result="refused",
                                      message="FILE:LINE: [section] Key: why"))
    assert ok.replace("7", "N") in text, ok
    assert refused.replace("7", "N") in text, refused
    for option in ("--processes", "--stdio", "--listen", "qmail-queue", "SIGHUP", "SIGTERM", "PidFile"):
        assert option in text, option
