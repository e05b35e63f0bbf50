"""Which notices are due (5.4.1), what keepup2date is told (5.4), what components log at start (5.4.2)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from runtime.config import load_config
from runtime.license import keyfile
from runtime.license.accounting import Usage
from runtime.license.info import log_key_info
from runtime.license.policy import MB, licence_allows_update, per_message, periodic
from runtime.report import EventLog
from tests.support.license import Publisher, write_config

TODAY = dt.date(2026, 6, 1)


def key(pub: Publisher, ktype: str = "users", units: int = 10, expires_in: int = 100) -> keyfile.LicenceKey:
    data = keyfile.issue(pub.private, serial="0038-000419-0003D3EA", ktype=ktype, units=units,
                         issued=TODAY - dt.timedelta(days=30), expires=TODAY + dt.timedelta(days=expires_in),
                         licensee="X")
    return keyfile.parse(data)


def usage(users: int = 0, mb: float = 0.0) -> Usage:
    b = int(mb * MB)
    return Usage(users, b, [b] + [0] * 23)


def events(notices: list) -> list[str]:  # noqa: ANN001
    return [n.event for n in notices]


def test_expiry_windows(tmp_path: Path) -> None:
    pub = Publisher.create(tmp_path)
    for days, want in ((15, []), (14, ["licence-expiring"]), (0, ["licence-expiring"]), (-1, ["licence-expired"])):
        k = key(pub, expires_in=days)
        assert events(periodic({"users": k}, {"users": usage(3)}, TODAY)) == want, days
    (n,) = periodic({"users": key(pub, expires_in=13)}, {"users": usage(3)}, TODAY)
    assert n.kind == "expiring:0038-000419-0003D3EA" and n.macros["DAYS"] == "13"
    assert n.macros["SHORTNAME"] == "product key 0038-000419-0003D3EA expires in 13 days"


def test_exceeded_and_over_110_percent(tmp_path: Path) -> None:
    pub = Publisher.create(tmp_path)
    users, traffic = key(pub, "users", 10), key(pub, "traffic", 10)
    active = {"users": users, "traffic": traffic}
    assert periodic(active, {"users": usage(10), "traffic": usage(mb=10)}, TODAY) == []  # at 100 %: fine
    due = periodic(active, {"users": usage(11), "traffic": usage(mb=10.5)}, TODAY)
    assert events(due) == ["licence-exceeded", "licence-exceeded"]
    assert per_message(active, {"users": usage(11), "traffic": usage(mb=10.5)}, TODAY, "Infected") == []  # <=110 %
    over = {"users": usage(12), "traffic": usage(mb=11.5)}
    assert events(per_message(active, over, TODAY, "Infected")) == ["licence-overlimit", "licence-overlimit"]
    assert per_message(active, over, TODAY, "Clean") == []
    (n,) = per_message({"traffic": traffic}, over, TODAY, "Suspicious")
    assert n.kind == "" and n.macros["PERCENT"] == "115" and n.macros["USED"] == "11.50 MB of Clean mail today"


def _site(tmp_path: Path, require: bool) -> Path:
    conf = write_config(tmp_path)
    conf.write_text(conf.read_text() + f"\n[updater.options]\nRequireKey={'yes' if require else 'no'}\n")
    return conf


def test_licence_allows_update(tmp_path: Path) -> None:
    pub = Publisher.create(tmp_path)
    conf = _site(tmp_path, require=True)
    cfg = load_config(conf)
    ok, why = licence_allows_update(cfg)
    assert not ok and "no valid product key" in why and "scanning goes on" in why
    lic = tmp_path / "licenses"
    lic.mkdir()
    (lic / "0003D3EA.key").write_bytes(pub.key(start_days=-400, days=-2))
    ok, why = licence_allows_update(cfg)
    assert not ok and "expired on" in why
    (lic / "0003D3EA.key").write_bytes(pub.key(days=20))
    ok, why = licence_allows_update(cfg)
    assert ok and "valid until" in why
    (lic / "0003D3EA.key").write_bytes(pub.key(days=20).replace(b"Units: 5", b"Units: 9"))  # tampered
    ok, why = licence_allows_update(cfg)
    assert not ok and "checksum mismatch" in why
    ok, why = licence_allows_update(load_config(_site(tmp_path, require=False)))
    assert ok and "does not require" in why


def test_log_key_info_at_start(tmp_path: Path) -> None:
    pub = Publisher.create(tmp_path)
    cfg = load_config(write_config(tmp_path))
    log_path = tmp_path / "component.log"
    log = EventLog(str(log_path))
    assert "no product key installed" in log_key_info(log, cfg)[0]
    lic = tmp_path / "licenses"
    lic.mkdir()
    (lic / "0003D3EA.key").write_bytes(pub.key(days=30))
    (lic / "0003E3E8.key").write_bytes(pub.key(serial="011E-000413-0003E3E8", start_days=-60, days=-1))
    lines = log_key_info(log, cfg)
    assert lines[0].startswith("License file 0003D3EA.key, serial 0038-000419-0003D3EA") and "in 30 days" in lines[0]
    assert "expired" in lines[1]
    text = log_path.read_text()
    assert "no product key installed" in text and "License file 0003E3E8.key" in text
