"""The console in a real headless browser (Debian's chromium + chromium-driver through selenium):
log in, status, a statistics plot that equals the AVStatistics log after real mail, release of a
quarantined EICAR message to the sink, a config edit refused then saved and reloaded (smtpscanner
re-reads it: the next message shows the new value), a forged POST
refused, an expired session.  Screenshots of every page go to .pytest-artifacts/console/."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.console import browser, screenshot
from tests.support.filter import EICAR, eicar_mail
from tests.support.procs import wait_for

PW = "correct horse battery"


@pytest.fixture
def driver(tmp_path: Path):  # noqa: ANN201
    d = browser(tmp_path)
    yield d
    d.quit()


def login(d, url: str, user: str = "admin", password: str = PW) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    d.get(url + "/login")
    d.find_element(By.ID, "user").send_keys(user)
    d.find_element(By.ID, "password").send_keys(password)
    screenshot(d, "login")
    d.find_element(By.ID, "login").click()


def edit(d, url: str, section: str, key: str, value: str) -> None:  # noqa: ANN001
    """Type ``value`` into ``key``'s field of the Configuration page and ask for the check and diff."""
    from selenium.webdriver.common.by import By

    d.get(f"{url}/config?section={section}")
    field = d.find_element(By.ID, f"k-{key}")
    field.clear()
    field.send_keys(value)
    d.find_element(By.ID, "preview").click()


def test_console_in_a_browser(make_console, driver) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    st = make_console()
    for i in range(7):
        assert st.send(eicar_mail("clean", subject=f"clean {i}"))["bob@example.com"][0] == 250
    infected = eicar_mail("EICAR", subject="eicar for release")
    for data in (infected, eicar_mail("EICAR", subject="second eicar")):
        assert st.send(data)["bob@example.com"][0] == 250
    d = driver

    # log in -> status
    login(d, st.url)
    wait_for(lambda: d.current_url.endswith("/status"), what="the status page after login")
    assert d.find_element(By.ID, "aveserver").text == "running"
    assert d.find_element(By.ID, "smtpscanner").text == "listening"
    assert d.find_element(By.ID, "whoami").text == "admin (admin)"
    screenshot(d, "status")

    # statistics: the plot's bars carry the same counts as the AVStatistics file (guide 6.8.3)
    d.get(st.url + "/statistics")
    bars = d.find_elements(By.CSS_SELECTOR, "#plot-status rect.bar")
    plotted: Counter[str] = Counter()
    for b in bars:
        plotted[b.get_attribute("data-status")] += int(b.get_attribute("data-count"))
    logged = Counter(line.split("\t")[1] for line in (st.root / "log" / "smtpscanner.stat").read_text().splitlines())
    assert plotted == logged == Counter({"OK": 7, "INFECTED": 2})
    top = {b.get_attribute("data-name"): int(b.get_attribute("data-count"))
           for b in d.find_elements(By.CSS_SELECTOR, "#plot-viruses rect.bar")}
    assert top == {"EICAR-Test-File": 2}
    assert "7 clean, 2 with detections" in d.find_element(By.ID, "ratio-text").text
    screenshot(d, "statistics")

    # quarantine: view the headers, release one EICAR message, find it in the sink
    d.get(st.url + "/quarantine")
    rows = d.find_elements(By.CSS_SELECTOR, "#entries tr.entry")
    assert len(rows) == 2
    screenshot(d, "quarantine")
    d.find_element(By.LINK_TEXT, "eicar for release").click()
    headers = {r.find_element(By.TAG_NAME, "th").text: r.find_element(By.TAG_NAME, "td").text
               for r in d.find_elements(By.CSS_SELECTOR, "#headers tr")}
    assert headers["Subject"] == "eicar for release"
    screenshot(d, "quarantine-view")
    before = len(st.sink.got)
    d.find_element(By.ID, "release").click()
    assert "released to bob@example.com" in d.find_element(By.ID, "results").text
    screenshot(d, "quarantine-released")
    wait_for(lambda: len(st.sink.got) == before + 1, what="the released message at the sink")
    got = st.sink.got[-1]
    assert got.rcpts == ["bob@example.com"] and got.sender == "alice@example.com"
    assert got.data.replace(b"\r\n", b"\n") == infected.replace(b"\r\n", b"\n")  # the original, unaltered
    assert EICAR in [part.get_payload(decode=True) for part in got.msg.walk()]
    d.get(st.url + "/quarantine")
    assert len(d.find_elements(By.CSS_SELECTOR, "#entries tr.entry")) == 1

    # configuration: a bad value is refused with its message, a good one saved and reloaded
    d.get(st.url + "/config?section=aveserver.limits")
    assert "Seconds one object may take." in d.find_element(By.ID, "keys").text
    edit(d, st.url, "aveserver.limits", "MaxScanTime", "soon")
    errors = d.find_element(By.ID, "errors").text
    assert "MaxScanTime" in errors and str(st.conf) in errors
    screenshot(d, "config-invalid")
    assert "MaxScanTime" not in st.conf.read_text()
    edit(d, st.url, "aveserver.limits", "MaxScanTime", "30")
    assert "+MaxScanTime=30" in d.find_element(By.ID, "diff").text
    screenshot(d, "config-diff")
    d.find_element(By.ID, "save").click()
    result = d.find_element(By.ID, "results").text
    assert "1 value(s) written" in result and "reload requested" in result
    assert f"pid {st.scanner.pid}: reloaded (generation 2)" in result  # smtpscanner re-read the file
    screenshot(d, "config-saved")
    assert "[aveserver.limits]\nMaxScanTime=30\n" in st.conf.read_text()
    wait_for(lambda: "SIGHUP: reloading configuration" in (st.root / "log" / "aveserver.log").read_text(),
             what="aveserver's reload")

    # a setting of smtpscanner's own, saved and reloaded: the next message shows it
    assert st.send(eicar_mail("clean", subject="before the edit"))["bob@example.com"][0] == 250
    assert st.sink.got[-1].msg["X-Anti-Virus"] is not None
    edit(d, st.url, "smtpscan.group:default", "AddXHeaders", "no")
    assert "+AddXHeaders=no" in d.find_element(By.ID, "diff").text
    d.find_element(By.ID, "save").click()
    result = d.find_element(By.ID, "results").text
    assert f"pid {st.scanner.pid}: reloaded (generation 3)" in result
    screenshot(d, "config-saved-smtpscanner")
    assert st.send(eicar_mail("clean", subject="after the edit"))["bob@example.com"][0] == 250
    assert st.sink.got[-1].msg["X-Anti-Virus"] is None, "smtpscanner did not apply the saved AddXHeaders=no"

    # a forged POST (a form without the token, as another site would send it) is refused
    d.get(st.url + "/status")
    d.execute_script("""
        const f = document.createElement('form'); f.method = 'post'; f.action = '/quarantine/action';
        for (const [k, v] of [['action', 'delete'], ['id', arguments[0]]]) {
            const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }
        document.body.appendChild(f); f.submit();""", "0" * 32)
    wait_for(lambda: "forged request refused" in d.page_source, what="the CSRF refusal")
    screenshot(d, "csrf-refused")
    assert any(a["action"] == "/quarantine/action" and "CSRF" in str(a["result"]) for a in st.audit_lines())
    actions = [a["action"] for a in st.audit_lines() if a["result"] == "ok"]
    for wanted in ("login", "quarantine.view", "quarantine.release", "config.save", "reload.aveserver"):
        assert wanted in actions
    assert ("reload.smtpscanner", "ok (generation 3)") in [(a["action"], a["result"]) for a in st.audit_lines()]


def test_session_expires_in_the_browser(make_console, driver) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    st = make_console(console={"SessionTimeout": 2})
    d = driver
    login(d, st.url)
    wait_for(lambda: d.current_url.endswith("/status"), what="the status page after login")
    time.sleep(3)
    d.find_element(By.LINK_TEXT, "Statistics").click()
    wait_for(lambda: "/login" in d.current_url, what="the login page after expiry")
    assert "session expired" in d.find_element(By.ID, "message").text
    screenshot(d, "session-expired")
    assert any(a["action"] == "session" and a["result"] == "expired" for a in st.audit_lines())
