"""``/metrics`` after known traffic through the real pre-forked smtpscanner (issue 18 acceptance:
100 clean and 5 EICAR messages show exactly those counts), parsed by prometheus_client's parser."""

from __future__ import annotations

import http.client
import socket
import sqlite3
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.filter import eicar_mail, free_port
from tests.support.procs import children, wait_for


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_count_exactly_the_traffic_across_prefork_workers(make_console) -> None:  # noqa: ANN001
    st = make_console(processes=2)
    sizes = 0
    for i in range(100):
        m = eicar_mail("clean", subject=f"clean {i}")
        sizes += len(m)
        assert st.send(m)["bob@example.com"][0] == 250
    for i in range(5):
        m = eicar_mail("EICAR", subject=f"eicar {i}")
        sizes += len(m)
        assert st.send(m)["bob@example.com"][0] == 250
    m = scrape(st.url)
    assert m["kav4ms_messages_total"] == {(("status", "OK"),): 100.0, (("status", "INFECTED"),): 5.0}
    assert m["kav4ms_detections_total"] == {(("virus", "EICAR-Test-File"),): 5.0}
    assert m["kav4ms_scanned_bytes_total"][()] == sizes
    assert m["kav4ms_scan_duration_seconds_count"][()] == 105
    assert m["kav4ms_scan_duration_seconds_bucket"][(("le", "+Inf"),)] == 105
    assert m["kav4ms_aveserver_up"][()] == 1 and m["kav4ms_smtpscanner_up"][()] == 1
    assert m["kav4ms_database_records"][()] >= 1
    assert m["kav4ms_aveserver_workers"][()] == 1  # [aveserver.options] Workers=1 in the test config
    assert 0 <= m["kav4ms_database_age_seconds"][()] < 3600
    # one store for both pre-forked workers
    with sqlite3.connect(st.store) as db:
        writers = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert writers == 105
    assert len(children(st.scanner.pid)) == 2
    # the two pre-forked workers (not the master) are smtpscanner's workers; the sessions are over
    wait_for(lambda: (x := scrape(st.url))["kav4ms_smtpscanner_workers_idle"][()] == 2
             and x["kav4ms_smtpscanner_workers_busy"][()] == 0, what="2 idle smtpscanner workers")

    # totals survive a restart of both programs
    st.restart_scanner()
    st.console.terminate()
    st.console.wait(20)
    st.start_console()
    assert scrape(st.url)["kav4ms_messages_total"][(("status", "OK"),)] == 100.0

    # a temp failure is counted by reason, not as a message
    st.kill_ave()
    code, _ = st.send(eicar_mail("clean", subject="deferred"))["bob@example.com"]
    assert code == 451
    m = scrape(st.url)
    assert m["kav4ms_tempfail_total"] == {(("reason", "aveserver_unavailable"),): 1.0}
    assert m["kav4ms_messages_total"][(("status", "OK"),)] == 100.0
    assert m["kav4ms_aveserver_up"][()] == 0


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent by a UDP connect
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


@pytest.mark.parametrize("allowed", [False, True])
def test_metrics_only_for_loopback_and_allowed_addresses(make_console, allowed: bool) -> None:  # noqa: ANN001
    addr = _non_loopback_address()
    if addr is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    port = free_port()
    st = make_console(console={"MetricsAllow": addr} if allowed else None, console_args=("--listen", f"{addr}:{port}"))
    c = http.client.HTTPConnection(addr, port, timeout=30)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read()
    if allowed:
        assert r.status == 200 and b"kav4ms_messages_total" in body
    else:
        assert r.status == 403
        assert any(a["action"] == "metrics" and str(a["result"]).startswith("refused") and a["addr"] == addr
                   for a in st.audit_lines())


def test_busy_and_idle_workers_and_open_sessions(make_console) -> None:  # noqa: ANN001
    """aveserver's scoreboard read through /metrics and the Status page: idle at rest, busy while a
    scan runs; smtpscanner's open sessions counted from the kernel's connection table."""
    import threading
    import time

    from runtime.engine.client import AveClient

    st = make_console()
    m = scrape(st.url)
    assert m["kav4ms_aveserver_workers_busy"][()] == 0 and m["kav4ms_aveserver_workers_idle"][()] == 1
    assert m["kav4ms_aveserver_scans_in_progress"][()] == 0
    assert m["kav4ms_smtpscanner_sessions"][()] == 0
    assert m["kav4ms_smtpscanner_workers_busy"][()] == 0 and m["kav4ms_smtpscanner_workers_idle"][()] == 1

    stop = threading.Event()
    blob = b"".join(b"%08d some text to scan, nothing infected here\n" % i for i in range(400_000))  # ~20 MB

    def scan_forever() -> None:
        with AveClient(str(st.sock), timeout=120) as c:
            while not stop.is_set():
                c.scan_bytes(blob, "big.txt")

    t = threading.Thread(target=scan_forever, daemon=True)
    t.start()
    seen = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = scrape(st.url)
            seen.append((m["kav4ms_aveserver_workers_busy"][()], m["kav4ms_aveserver_workers_idle"][()]))
            if seen[-1] == (1, 0):
                break
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(120)
    assert seen[-1] == (1, 0), f"never saw the worker busy: {seen[-5:]}"

    # two SMTP sessions held open (greeting read): exactly two sessions
    socks = [socket.create_connection(("127.0.0.1", st.port), timeout=30) for _ in range(2)]
    try:
        for s in socks:
            assert s.recv(512).startswith(b"220")
        m = scrape(st.url)
        assert m["kav4ms_smtpscanner_sessions"][()] == 2
        assert m["kav4ms_smtpscanner_workers_busy"][()] == 1 and m["kav4ms_smtpscanner_workers_idle"][()] == 0
        from tests.support.console import Client

        c = Client(st.url)
        assert c.login("admin", "correct horse battery") == 303
        _, _, page = c.get("/status")
        assert 'id="sessions">2<' in page and 'id="idle">1<' in page and 'id="busy">0<' in page
        assert 'id="filter-busy">1<' in page and 'id="filter-idle">0<' in page
    finally:
        for s in socks:
            s.close()
