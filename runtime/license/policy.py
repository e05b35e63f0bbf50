"""Which licence notices are due (guide 5.4.1), as pure functions of keys, usage and time.

* 14 days before a key expires: once every 24 hours and at each start of the filter;
* the same once it has expired, and while licensed users/traffic exceed the key's units;
* above 110 % of the licensed units: a notice for every message whose status is not Clean.

Scanning and mail flow never depend on any of this (5.4): the filter only tells the admin.
The filter's glue (``runtime/filter/licence.py``) sends what these functions return through the
virus notices' path; ``licence_allows_update`` is what keepup2date asks before an update.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from runtime.license.accounting import Usage
from runtime.license.keyfile import LicenceKey, fmt_date

WARN_DAYS = 14
OVER_LIMIT = 1.10
MB = 1024 * 1024


@dataclass(frozen=True)
class Notice:
    kind: str  # claim key in the store ("expiring:SERIAL" ...); per-message notices have ""
    event: str  # template suffix and X-Anti-Virus-Notice event: licence-expiring ...
    macros: dict[str, str]


def day_start(d: dt.date) -> float:
    """Epoch seconds of local midnight starting ``d`` (users are counted from the key's issue day)."""
    return time.mktime(d.timetuple())


def used(key: LicenceKey, usage: Usage) -> float:
    """Usage in the key's units: users, or MB of today's Clean traffic."""
    return float(usage.users) if key.type == "users" else usage.today_bytes / MB


def fmt_units(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def key_macros(key: LicenceKey, usage: Usage, today: dt.date) -> dict[str, str]:
    u = used(key, usage)
    unit = "users" if key.type == "users" else "MB of Clean mail today"
    return {
        "SERIAL": key.serial,
        "KEYFILE": key.file_name,
        "DESCRIPTION": key.description,
        "LICENSEE": key.licensee,
        "TYPE": key.type,
        "EXPIRES": fmt_date(key.expires),
        "DAYS": str(key.days_left(today)),
        "UNITS": f"{key.units} {unit}",
        "USED": f"{fmt_units(u)} {unit}",
        "LEFT": f"{fmt_units(max(0.0, key.units - u))} {unit}",
        "PERCENT": f"{100.0 * u / key.units:.0f}",
    }


def periodic(active: dict[str, LicenceKey], usage_for: dict[str, Usage], today: dt.date) -> list[Notice]:
    """Notices that go out once every 24 hours and at each start while their condition holds."""
    out: list[Notice] = []
    for ktype, key in sorted(active.items()):
        usage = usage_for[ktype]
        m = key_macros(key, usage, today)
        days = key.days_left(today)
        if days < 0:
            out.append(Notice(f"expired:{key.serial}", "licence-expired",
                              {**m, "SHORTNAME": f"product key {key.serial} expired on {m['EXPIRES']}"}))
        elif days <= WARN_DAYS:
            out.append(Notice(f"expiring:{key.serial}", "licence-expiring",
                              {**m, "SHORTNAME": f"product key {key.serial} expires in {days} days"}))
        if used(key, usage) > key.units:
            out.append(Notice(f"exceeded:{key.serial}", "licence-exceeded",
                              {**m, "SHORTNAME": f"licensed {key.type} exceeded ({m['PERCENT']} %)"}))
    return out


def per_message(active: dict[str, LicenceKey], usage_for: dict[str, Usage], today: dt.date,
                status: str) -> list[Notice]:
    """Above 110 % of the licensed units, one notice per message whose status is not Clean."""
    if status == "Clean":
        return []
    out: list[Notice] = []
    for ktype, key in sorted(active.items()):
        if used(key, usage_for[ktype]) > key.units * OVER_LIMIT:
            m = key_macros(key, usage_for[ktype], today)
            out.append(Notice("", "licence-overlimit",
                              {**m, "SHORTNAME": f"licensed {key.type} exceeded by more than 10 % ({m['PERCENT']} %)"}))
    return out


def licence_allows_update(cfg, today: dt.date | None = None) -> tuple[bool, str]:  # noqa: ANN001
    """What keepup2date asks before updating (5.4: updates stop when the key expires).

    ``[updater.options] RequireKey`` says whether the configured source requires a key (the
    project's open sources do not; a site whose update service is an entitlement does).  Without a verified, started,
    unexpired key for this product the answer is (False, the reason for the update report).
    """
    from runtime.license.keystore import KeyStore

    today = today or dt.date.today()
    if not _update_source_requires_key(cfg):
        return True, "the update source does not require a product key"
    store = KeyStore.for_config(cfg)
    items = store.installed()
    good = [i.key for i in items if i.key is not None and i.key.state(today) == "valid"]
    if good:
        best = max(good, key=lambda k: k.expires)
        return True, f"product key {best.serial} valid until {fmt_date(best.expires)}"
    started = [i.key for i in items if i.key is not None and i.key.state(today) == "expired"]
    if started:
        last = max(started, key=lambda k: k.expires)
        return False, (f"product key {last.serial} expired on {fmt_date(last.expires)}: the update source requires "
                       "a valid key (5.4); scanning goes on with the current databases")
    bad = "; ".join(f"{i.path.name}: {i.error}" for i in items if i.key is None)
    return False, ("no valid product key in " + str(store.directory) + (f" ({bad})" if bad else "")
                   + ": the update source requires one (5.4); scanning goes on with the current databases")


def _update_source_requires_key(cfg) -> bool:  # noqa: ANN001
    """``[updater.options] RequireKey``: does the configured update source require a key?"""
    return bool(cfg.get("updater.options", "RequireKey"))
