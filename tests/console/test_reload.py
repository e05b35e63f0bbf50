"""What "reload" does for each daemon after a configuration change, with the real processes:
aveserver is asked over its socket (clamd RELOAD, granted by peer credentials) and re-reads; the
standing smtpscanner (pre-forked or one process) is found through its pid file, checked to be
smtpscanner with the console's own configuration file, sent SIGHUP, and its answer reported: the
generation now serving (the change shows on the next message) or the file, line and key that made
it refuse.  A planted pid file is refused and audited; nothing is signalled (issue 18)."""

from __future__ import annotations

import os
import time

import pytest

from tests.support.console import Client
from tests.support.filter import eicar_mail
from tests.support.procs import stop, wait_for


def _form(page: str, **values: str) -> dict[str, str]:
    return {"csrf": Client.csrf(page), "file": "", **values}


def _audit(st) -> list[tuple[str, str]]:  # noqa: ANN001
    return [(str(a["action"]), str(a["result"])) for a in st.audit_lines() if str(a["action"]).startswith("reload.")]


@pytest.mark.parametrize("processes", [2, 1])
def test_save_reloads_smtpscanner_and_the_next_message_shows_it(make_console, processes: int) -> None:  # noqa: ANN001
    st = make_console(processes=processes)
    wait_for(lambda: st.reload_state().get("pid") == st.scanner.pid, what="smtpscanner's state file")
    c = Client(st.url)
    assert c.login("admin", "correct horse battery") == 303
    _, _, page = c.get("/status")
    assert "before" not in page or "last changed" not in page

    code, _, result = c.post("/config/reload", _form(page))
    assert code == 200
    assert "reload requested" in result and "RELOADING" in result
    assert f"pid {st.scanner.pid}: reloaded (generation 2)" in result  # the master, not a worker
    assert "restart" not in result
    wait_for(lambda: "reloading configuration" in (st.root / "log" / "aveserver.log").read_text(),
             what="aveserver's reload")
    assert ("reload.smtpscanner", "ok (generation 2)") in _audit(st)

    st.send(eicar_mail("clean", subject="before"))
    assert st.sink.got[-1].msg["X-Anti-Virus"] is not None
    section = "smtpscan.group:default"
    _, _, page = c.get(f"/config?section={section}")
    code, _, result = c.post("/config/save", _form(page, section=section, **{"k:AddXHeaders": "no"}))
    assert code == 200 and "1 value(s) written" in result
    assert f"pid {st.scanner.pid}: reloaded (generation 3)" in result
    assert st.send(eicar_mail("clean", subject="after"))["bob@example.com"][0] == 250
    assert st.sink.got[-1].msg["X-Anti-Virus"] is None, "the saved AddXHeaders=no did not reach smtpscanner"
    _, _, page = c.get("/status")
    assert "last changed" not in page  # up to date: it read the file after the save

    # a hand edit the console did not validate: smtpscanner refuses it and keeps serving
    time.sleep(0.05)
    text = st.conf.read_text()
    line = text.splitlines().index("AddXHeaders=no") + 1
    st.conf.write_text(text.replace("AddXHeaders=no", "AddXHeaders=sometimes"))
    _, _, page = c.get("/status")
    assert "before" in page and "last changed" in page and "reload it" in page
    code, _, result = c.post("/config/reload", _form(page))
    assert "reload refused, still serving generation 3" in result
    assert f"{st.conf}:{line}: [smtpscan.group:default] AddXHeaders:" in result
    assert ("reload.smtpscanner", "refused by smtpscanner: invalid configuration") in _audit(st)
    assert st.send(eicar_mail("clean", subject="still"))["bob@example.com"][0] == 250
    assert st.sink.got[-1].msg["X-Anti-Virus"] is None and st.scanner.poll() is None

    st.kill_ave()
    stop(st.scanner)
    _, _, result = c.post("/config/reload", _form(page))
    assert "aveserver" in result and "not reloaded" in result
    assert "not running as a daemon" in result
    assert _audit(st)[-2][0] == "reload.aveserver" and _audit(st)[-2][1].startswith("failed")


def test_a_planted_pid_file_is_refused_and_audited(make_console) -> None:  # noqa: ANN001
    st = make_console()
    wait_for(lambda: st.reload_state().get("pid") == st.scanner.pid, what="smtpscanner's state file")
    c = Client(st.url)
    assert c.login("admin", "correct horse battery") == 303
    _, _, page = c.get("/status")
    refusals = []
    # aveserver runs as the same account: a pid the console could signal, but not smtpscanner's
    for pid, mode, why in ((st.ave.pid, 0o644, "is not smtpscanner"), (1, 0o644, "belongs to uid 0"),
                           (st.scanner.pid, 0o666, "writable by it alone")):
        st.pid_file.write_text(f"{pid}\n")
        os.chmod(st.pid_file, mode)
        _, _, result = c.post("/config/reload", _form(page))
        assert why in result, result
        refusals.append(_audit(st)[-1])
    assert all(a == "reload.smtpscanner" and r.startswith("refused") for a, r in refusals), refusals
    assert "SIGHUP" not in st.log_text() and st.ave.poll() is None and st.scanner.poll() is None
    assert st.reload_state()["attempts"] == 0


def test_without_a_pid_file_the_console_says_how_to_reload(make_console) -> None:  # noqa: ANN001
    """A daemon started with PidFile empty cannot be found to be signalled: the reload says so
    and how, and the Status page judges it by its start time."""
    st = make_console()
    stop(st.scanner)
    text = st.conf.read_text()
    st.conf.write_text(text.replace(f"PidFile={st.pid_file}", "PidFile="))
    st.start_scanner()
    c = Client(st.url)
    assert c.login("admin", "correct horse battery") == 303
    _, _, page = c.get("/status")
    _, _, result = c.post("/config/reload", _form(page))
    assert "PidFile is empty" in result and "systemctl reload kav4mailservers-smtpscanner" in result
    assert _audit(st)[-1][1].startswith("refused: [smtpscan.general] PidFile is empty")
    assert not st.pid_file.exists()
    time.sleep(1.5)  # start times have a clock tick's resolution; the check allows a second
    os.utime(st.conf)
    _, _, page = c.get("/status")
    assert f"smtpscanner (pid {st.scanner.pid}, started" in page and "reload or restart it" in page
