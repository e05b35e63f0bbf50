"""What "reload" does for each daemon after a configuration change, with the real processes:
aveserver is asked over its socket (clamd RELOAD, granted by peer credentials) and re-reads; the
pre-forked smtpscanner, which reads its configuration at start, is found through its listener and
reported as needing a restart exactly while it predates the file (issue 18)."""

from __future__ import annotations

import time

from tests.support.console import Client
from tests.support.procs import wait_for


def _form(page: str, **values: str) -> dict[str, str]:
    return {"csrf": Client.csrf(page), "file": "", **values}


def test_reload_requests_aveserver_and_tells_when_smtpscanner_predates_the_file(make_console) -> None:  # noqa: ANN001
    st = make_console(processes=2)
    c = Client(st.url)
    assert c.login("admin", "correct horse battery") == 303
    _, _, page = c.get("/status")
    assert "runs with the configuration as it was before" not in page

    code, _, result = c.post("/config/reload", _form(page))
    assert code == 200
    assert "reload requested" in result and "RELOADING" in result
    assert f"pid {st.scanner.pid} started" in result and "up to date" in result  # the master, not a worker
    wait_for(lambda: "reloading configuration" in (st.root / "log" / "aveserver.log").read_text(),
             what="aveserver's reload")

    time.sleep(1.5)  # start times have a clock tick's resolution; the check allows a second
    _, _, page = c.get("/config?section=aveserver.limits")
    code, _, result = c.post("/config/save", _form(page, section="aveserver.limits", **{"k:MaxScanTime": "31"}))
    assert code == 200 and "1 value(s) written" in result
    assert f"pid {st.scanner.pid} started" in result and "restart it to apply the change" in result
    _, _, page = c.get("/status")
    assert f"smtpscanner (pid {st.scanner.pid}" in page and "restart it to apply" in page

    st.restart_scanner()
    _, _, page = c.get("/status")
    assert "runs with the configuration as it was before" not in page
    _, _, result = c.post("/config/reload", _form(page))
    assert f"pid {st.scanner.pid} started" in result and "up to date" in result

    st.kill_ave()
    _, _, result = c.post("/config/reload", _form(page))
    assert "aveserver" in result and "not reloaded" in result
    audit = [(a["action"], str(a["result"])) for a in st.audit_lines() if a["action"].startswith("reload.")]
    assert ("reload.aveserver", "ok") in audit and ("reload.smtpscanner", "restart needed") in audit
    assert audit[-2][0] == "reload.aveserver" and audit[-2][1].startswith("failed")
