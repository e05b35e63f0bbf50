"""kavscanner logs the product key information at start (guide 5.4.2: aveserver, keepup2date and
kavscanner "load the information from the keys when they are launched"), in its report and on the
console; a missing or expired key is a warning and the scan goes on (5.4)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.license import Publisher, licence_paths

if TYPE_CHECKING:
    from tests.scanner.conftest import Kit


def _conf(kit: Kit, lic_root: Path) -> Path:
    return kit.config(path={k: str(v) for k, v in licence_paths(lic_root).items()})


def test_kavscanner_logs_key_information_at_start(kit: Kit, tmp_path: Path) -> None:
    area = tmp_path / "area"
    area.mkdir()
    (area / "clean.txt").write_text("nothing to see\n")
    lic_root = tmp_path / "lic"
    pub = Publisher.create(lic_root)
    conf = _conf(kit, lic_root)

    r = kit.scan(str(area), conf=conf)
    assert r.returncode == 0, r.stderr
    report = kit.report.read_text()
    line = next(x for x in report.splitlines() if "no product key installed" in x)
    assert " W] " in line, line  # a warning, and the scan still ran
    assert "no product key installed" in r.stdout

    (lic_root / "licenses").mkdir()
    (lic_root / "licenses" / "0003D3EA.key").write_bytes(pub.key(days=30))
    (lic_root / "licenses" / "0003E3E8.key").write_bytes(
        pub.key(serial="011E-000413-0003E3E8", start_days=-60, days=-1))
    kit.report.unlink()
    r = kit.scan(str(area), conf=conf)
    assert r.returncode == 0, r.stderr
    lines = kit.report.read_text().splitlines()
    valid = next(x for x in lines if "serial 0038-000419-0003D3EA" in x)
    assert "License file 0003D3EA.key" in valid and "in 30 days" in valid and " I] " in valid, valid
    expired = next(x for x in lines if "serial 011E-000413-0003E3E8" in x)
    assert "expired" in expired and " W] " in expired, expired
    # at start: before the scan area line
    assert lines.index(valid) < next(i for i, x in enumerate(lines) if "scan area:" in x)
