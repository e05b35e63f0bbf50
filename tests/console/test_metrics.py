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
from tests.support.procs import children


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
