"""The Quarantine and Status pages over HTTP: search and filters, bulk delete, the last update,
the product keys (guide 5.4) and their days left in /metrics."""

from __future__ import annotations

import re

from tests.support.console import Client, chown_tree
from tests.support.filter import eicar_mail
from tests.support.license import Publisher

PW = "correct horse battery"


def _ids(page: str) -> list[str]:
    return re.findall(r'<tr class="entry" data-id="([0-9a-f]{32})">', page)


def test_search_filters_and_bulk_delete(make_console) -> None:  # noqa: ANN001
    st = make_console()
    st.send(eicar_mail("EICAR", subject="invoice march"), sender="carol@example.org")
    st.send(eicar_mail("EICAR", subject="holiday photos"), sender="dave@example.net")
    st.send(eicar_mail("clean", subject="not quarantined"))
    c = Client(st.url)
    assert c.login("admin", PW) == 303
    code, _, page = c.get("/quarantine")
    assert code == 200 and len(_ids(page)) == 2
    assert len(_ids(c.get("/quarantine?q=invoice")[2])) == 1
    assert len(_ids(c.get("/quarantine?sender=dave")[2])) == 1
    assert len(_ids(c.get("/quarantine?virus=EICAR-Test-File")[2])) == 2
    assert len(_ids(c.get("/quarantine?recipients=nobody-here")[2])) == 0
    ids = _ids(page)
    code, _, result = c.post("/quarantine/action", {"csrf": Client.csrf(page), "action": "delete", "id": ids})
    assert code == 200 and result.count("deleted") == 2
    assert not list(st.quarantine.glob("*.kavq"))
    deleted = [a["id"] for a in st.audit_lines() if a["action"] == "quarantine.delete" and a["result"] == "ok"]
    assert sorted(deleted) == sorted(ids)


def test_status_shows_the_last_update_and_the_daemons(make_console) -> None:  # noqa: ANN001
    st = make_console(start_console=False)
    log = st.root / "log" / "keepup2date.log"
    log.write_text("[01-12-26 10:00:00 I] update started\n[01-12-26 10:00:05 I] update finished: 3 files\n")
    st.conf.write_text(st.conf.read_text() + f"\n[updater.report]\nReportFileName={log}\n")
    # a product key with 10 days left, from a publisher this configuration trusts
    pub = Publisher.create(st.root)
    (st.root / "licenses").mkdir()
    (st.root / "licenses" / "0003D3EA.key").write_bytes(pub.key(ktype="users", units=5, days=10))
    text = st.conf.read_text().replace("[path]\n", f"[path]\nLicensePath={st.root / 'licenses'}\n"
                                                  f"LicensePublishersPath={pub.directory}\n", 1)
    st.conf.write_text(text)
    chown_tree(st.root)
    st.start_console()
    c = Client(st.url)
    assert c.login("admin", PW) == 303
    _, _, page = c.get("/status")
    assert "update finished: 3 files" in page
    assert re.search(r'id="aveserver" class="ok">running<', page)
    assert re.search(r'id="smtpscanner" class="ok">listening<', page)
    assert re.search(r'<span id="workers">1</span>', page)
    assert re.search(r'License file 0003D3EA.key, serial 0038-000419-0003D3EA, .* in 10 days', page)
    assert "product key 0038-000419-0003D3EA (users) expires in 10 days" in page
    metrics = Client(st.url).get("/metrics")[2]
    assert 'kav4ms_licence_days_left{serial="0038-000419-0003D3EA",type="users"} 10.0' in metrics
    st.kill_ave()
    _, _, page = c.get("/status")
    assert re.search(r'id="aveserver" class="bad">not answering<', page) and "aveserver is not answering" in page
