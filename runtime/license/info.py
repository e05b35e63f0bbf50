"""Key information as the guide prints it (5.4.2), for licensemanager and the components' start-up logs.

5.4.2: "each of them loads the information from the keys when they are launched" -- aveserver,
keepup2date and kavscanner call ``log_key_info`` at start; ``licensemanager -s/-k`` print the same
lines on the console.
"""

from __future__ import annotations

import datetime as dt

from runtime.config import KavConfig
from runtime.license.keyfile import LicenceKey, fmt_date
from runtime.license.keystore import Installed, KeyStore


def when(key: LicenceKey, today: dt.date) -> str:
    days = key.days_left(today)
    if today < key.issued:
        return f"valid from {fmt_date(key.issued)}, expires {fmt_date(key.expires)} in {days} days"
    if days < 0:
        return f"expired {fmt_date(key.expires)} ({-days} days ago)"
    return f"expires {fmt_date(key.expires)} in {days} days"


def key_line(key: LicenceKey, today: dt.date) -> str:
    """The guide's ``-k`` line: ``Serial 0038-000419-0003D3EA, "...", expires 04-07-2003 in 28 days``."""
    return f'Serial {key.serial}, "{key.description}", {when(key, today)}'


def installed_line(item: Installed, today: dt.date) -> str:
    """The guide's ``-s`` line; a file that fails verification is listed with its reason."""
    if item.key is None:
        return f"License file {item.path.name}: {item.error}"
    k = item.key
    return f'License file {item.path.name}, serial {k.serial}, "{k.description}", {when(k, today)}'


def details(key: LicenceKey) -> list[str]:
    kind = "per number of users" if key.type == "users" else "per mail traffic volume (MB of Clean mail a day)"
    return [f"License type: {kind}, {key.units} units", f"Issued: {fmt_date(key.issued)}",
            f"Licensee: {key.licensee}", f"Publisher: {key.publisher}"]


def log_key_info(eventlog, cfg: KavConfig, today: dt.date | None = None) -> list[str]:  # noqa: ANN001
    """Write one event-log line per installed key (or that there is none); returns the lines.

    Never raises: key information is for the admin, it must not stop a component from starting.
    """
    today = today or dt.date.today()
    try:
        store = KeyStore.for_config(cfg)
        items = store.installed()
    except Exception as exc:  # noqa: BLE001
        eventlog.warning(f"product keys unreadable: {exc}")
        return [f"product keys unreadable: {exc}"]
    if not items:
        line = f"no product key installed in {store.directory} (5.4: scanning works; updates and support need one)"
        eventlog.warning(line)
        return [line]
    lines = []
    for item in items:
        line = installed_line(item, today)
        lines.append(line)
        # a refused file, an expired key or one in its last 14 days is worth the admin's attention
        worry = item.key is None or item.key.state(today) != "valid" or item.key.days_left(today) <= 14
        (eventlog.warning if worry else eventlog.info)(line)
    return lines
