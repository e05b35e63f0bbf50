"""Guide 4.3's alternative configuration file through the console: copy the configuration under
another name, edit the copy (the daemons' file is untouched and nothing is reloaded), and names
that would leave the configuration directory are refused and audited."""

from __future__ import annotations

from tests.support.console import Client

PW = "correct horse battery"


def test_alternative_configuration_file(make_console) -> None:  # noqa: ANN001
    st = make_console()
    original = st.conf.read_text()
    c = Client(st.url)
    assert c.login("admin", PW) == 303
    _, _, page = c.get("/config")
    token = Client.csrf(page)

    code, headers, _ = c.post("/config/copy", {"csrf": token, "name": "night.conf"})
    assert code == 303 and headers["location"] == "/config?file=night.conf"
    alt = st.conf.parent / "night.conf"
    assert alt.read_text() == original
    code, _, page = c.get("/config?file=night.conf&section=aveserver.limits")
    assert code == 200 and "alternative file: the daemons use kav4mailservers.conf" in page

    form = {"csrf": token, "file": "night.conf", "section": "aveserver.limits", "k:MaxFiles": "500"}
    code, _, page = c.post("/config/preview", form)
    assert code == 200 and "+MaxFiles=500" in page and str(alt) in page
    code, _, page = c.post("/config/save", form)
    assert code == 200 and "not reloaded" in page
    assert "MaxFiles=500" in alt.read_text()
    assert st.conf.read_text() == original
    assert "SIGHUP" not in (st.root / "log" / "aveserver.log").read_text()

    for bad in ("../kav4mailservers.conf", "/etc/passwd", "x.conf/../../y.conf", ".hidden.conf", "night.txt"):
        code, _, _ = c.post("/config/copy", {"csrf": token, "name": bad})
        assert code == 422, bad
        code, _, _ = c.get(f"/config?file={bad}")
        assert code == 404, bad
        code, _, page = c.post("/config/save", {**form, "file": bad})
        assert code == 422, bad
    assert c.post("/config/copy", {"csrf": token, "name": "night.conf"})[0] == 422  # never overwritten
    refused = [a for a in st.audit_lines() if str(a["result"]).startswith("refused")]
    assert sum(a["action"] == "config.copy" for a in refused) == 6
    assert sum(a["action"] == "config.view" for a in refused) == 5
    assert sum(a["action"] == "config.save" for a in refused) == 5


def test_a_group_is_edited_like_a_section(make_console) -> None:  # noqa: ANN001
    st = make_console()
    c = Client(st.url)
    assert c.login("admin", PW) == 303
    code, _, page = c.get("/config?section=smtpscan.group:default")
    assert code == 200 and 'id="k-AdminAddress"' in page and "Group administrator" in page
    form = {"csrf": Client.csrf(page), "section": "smtpscan.group:default", "k:AdminAddress": "abuse@example.com",
            "k:AddXHeaders": "maybe"}
    code, _, page = c.post("/config/preview", form)
    assert code == 422 and "AddXHeaders" in page and "abuse@example.com" not in st.conf.read_text()
    form["k:AddXHeaders"] = "no"
    code, _, page = c.post("/config/preview", form)
    assert code == 200 and "+AdminAddress=abuse@example.com" in page and "+AddXHeaders=no" in page
    code, _, page = c.post("/config/save", form)
    assert code == 200 and "2 value(s) written" in page
    text = st.conf.read_text()
    group = text[text.index("[smtpscan.group:default]"):]
    assert "AdminAddress=abuse@example.com" in group and "AddXHeaders=no" in group
