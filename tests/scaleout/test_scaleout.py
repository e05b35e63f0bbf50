"""Issue 19 item 6, the scale-out recipe of docs/scale-out.md with real parts (tests/support/scaleout.py):
real Postfix on an MX host hands mail to two filter hosts (smtpscanner + aveserver from this tree),
Debian's HAProxy pools their aveserver clamd TCP ports; hosts are network namespaces joined by veth.
One filter host loses power mid-run: every accepted Message-ID must still reach the mail store,
none bounced, and the pool keeps scanning on the survivor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.scaleout import (
    FILTERS,
    filter_conf,
    haproxy_cfg,
    mx_hosts,
    mx_main_cf,
    mx_master_cf,
    run_in_namespace,
    tools_missing,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"


def test_the_document_shows_the_lines_the_lab_runs(tmp_path: Path) -> None:
    """docs/scale-out.md is the recipe: every configuration line the lab uses is in it, verbatim."""
    doc = DOC.read_text()
    addrs = list(FILTERS.values())
    lines = [f"postconf -e '{s}'" if set(s) & set(" []{}") else f"postconf -e {s}" for s in mx_main_cf(addrs)]
    lines += mx_master_cf(addrs).splitlines() + mx_hosts(addrs).splitlines()
    lines += [ln for ln in filter_conf(Path("/var/lib/kav"), addrs[0]).splitlines()
              if re.match(r"(ListenAddress|ForwardMailer|ClamdTcpPort|ClamdTcpAddress|Protocol)=", ln)]
    lines += [ln for ln in haproxy_cfg(FILTERS, Path("/run/haproxy/admin.sock")).splitlines() if ln.strip()]
    missing = [ln for ln in lines if ln not in doc]
    assert not missing, f"docs/scale-out.md lacks: {missing}"


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(bool(tools_missing()), reason=tools_missing() or "ok")
def test_a_filter_host_dies_mid_run_and_no_mail_is_lost() -> None:
    # every 8th message is big enough to be spooled, and every other one of the first half from the
    # 30th on, where the kill falls: filter1's aveserver is frozen, the kill waits until filter1 holds
    # a big one (the ~20 deliveries Postfix has running then all end up stuck in filter1)
    r = run_in_namespace({"messages": 300, "concurrency": 10, "kill": True, "hosts": 2, "outage": True,
                          "big_every": 8, "big_window": (30, 150, 2)})
    assert r["accepted"] == 300 + 20 and not r["refused"], r
    # mid-run: mail had gone through both hosts before the kill, and there was more to come
    assert r["per_host"].get("filter1", 0) > 0, r["per_host"]
    assert r["in_flight_at_kill"] > 0, "filter1 died holding mail it had read but not answered"
    assert r["cut_sessions"] > 0, f"Postfix saw no session to filter1 cut: {r['deferred_sample']}"
    # nothing lost, nothing bounced, nothing left queued; duplicates only as counted and explained
    assert r["lost"] == [], f"{len(r['lost'])} lost: {r['lost'][:10]}"
    assert r["bounced"] == [], r["bounced"]
    assert r["queue_left"] == 0, r
    assert r["unexpected"] == [], r["unexpected"]
    assert all(c == 2 for c in r["duplicates"].values()), r["duplicates"]
    # a duplicate only where Postfix itself warned: "lost connection ... while sending end of data --
    # message may be sent more than once" (filter1 had reinjected it, then died before its 250)
    assert len(r["duplicates"]) <= r["maybe_twice"], (r["duplicates"], r["cut_sample"])
    # mail submitted after the kill was scanned by the survivor only
    assert set(r["per_host_accepted_after_kill"]) == {"filter2"}, r["per_host_accepted_after_kill"]
    # every infected message arrived with the EICAR file removed (RecipientAction=remove)
    assert r["infected_delivered"] >= 300 // 20 and r["infected_with_eicar"] == 0, r
    # the pool: both aveservers served before; the dead one is marked DOWN, the survivor serves alone
    assert r["pool_before_ok"] == 20 and not r["pool_before_errors"], r
    assert all(int(s["stot"]) > 0 for s in r["pool_before"].values()), r["pool_before"]
    assert r["pool_after"]["filter1"]["status"].startswith("DOWN"), r["pool_after"]
    assert r["pool_after_ok"] == 20 and not r["pool_after_errors"], r
    assert int(r["pool_after"]["filter2"]["stot"]) >= int(r["pool_before"]["filter2"]["stot"]) + 20
    # then both filter hosts down: mail is accepted and queued, never bounced; it flows once they return
    out = r["outage"]
    assert out["accepted"] == out["sent"] and not out["refused"], out
    assert out["arrived_while_down"] == 0 and out["queued_while_down"] == out["sent"], out
    assert out["delivered_after"], out
    if "clamdscan" in r:  # Debian's clamdscan as a third host's client of the pool
        assert r["clamdscan"]["rc"] == 1 and r["clamdscan"]["out"].endswith("FOUND"), r["clamdscan"]
