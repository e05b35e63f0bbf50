"""``licensemanager``: the guide's commands (5.4.2), installing and removing keys, refusing bad ones.

Every run is the real entry point in a subprocess; each test makes its own publisher.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.license import keyfile
from runtime.license.keyfile import fmt_date
from tests.support.license import Publisher, licensemanager, write_config

USERS = "0038-000419-0003D3EA"
TRAFFIC = "011E-000413-0003E3E8"


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Publisher]:
    return write_config(tmp_path), Publisher.create(tmp_path)


def add(conf: Path, tmp: Path, data: bytes, name: str = "new.key"):  # noqa: ANN201
    f = tmp / name
    f.write_bytes(data)
    return licensemanager(conf, "-a", str(f))


def test_guide_commands_for_a_users_key_and_a_traffic_key(site, tmp_path: Path) -> None:  # noqa: ANN001
    conf, pub = site
    assert add(conf, tmp_path, pub.key("users", 5, days=234, serial=USERS)).returncode == 0
    assert add(conf, tmp_path, pub.key("traffic", 10, days=28, serial=TRAFFIC)).returncode == 0
    today = dt.date.today()
    exp_u, exp_t = fmt_date(today + dt.timedelta(days=234)), fmt_date(today + dt.timedelta(days=28))

    r = licensemanager(conf, "-s")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("kav4mailservers license manager version 5.5")
    assert "Kaspersky" not in r.stdout  # honest identity
    assert (f'License file 0003D3EA.key, serial {USERS}, "kav4mailservers for Unix mail servers '
            f'(licence per e-mail address)", expires {exp_u} in 234 days') in lines
    assert (f'License file 0003E3E8.key, serial {TRAFFIC}, "kav4mailservers for Unix mail servers '
            f'(licence per mail traffic volume)", expires {exp_t} in 28 days') in lines

    r = licensemanager(conf, "-k", "0003E3E8.key")  # a bare name is found in LicensePath
    assert r.returncode == 0, r.stderr
    assert (f'Serial {TRAFFIC}, "kav4mailservers for Unix mail servers (licence per mail traffic volume)", '
            f'expires {exp_t} in 28 days') in r.stdout.splitlines()
    assert "License type: per mail traffic volume (MB of Clean mail a day), 10 units" in r.stdout

    r = licensemanager(conf, "-i")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for want in ("License users units: 5", "Users units used: 0", "Users units left: 5",
                 "Daily traffic statistic(Bytes):", ",".join(["0"] * 24),
                 "License traffic units: 10 (MB)", "Traffic units used: 0 (MB)", "Traffic units left: 10 (MB)"):
        assert want in lines, (want, lines)


def test_install_is_verified_atomic_0640_and_remove(site, tmp_path: Path) -> None:  # noqa: ANN001
    conf, pub = site
    r = add(conf, tmp_path, pub.key(serial=USERS))
    assert r.returncode == 0 and "Installed" in r.stdout
    installed = tmp_path / "licenses" / "0003D3EA.key"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o640
    assert [p.name for p in installed.parent.iterdir()] == ["0003D3EA.key"]  # no temp file left
    again = add(conf, tmp_path, pub.key(serial=USERS, days=700))
    assert again.returncode == 0 and "Replaced" in again.stdout
    clash = add(conf, tmp_path, pub.key(serial="0001-000001-0003D3EA"))
    assert clash.returncode != 0 and "holds another key" in clash.stderr
    r = licensemanager(conf, "-d", USERS)
    assert r.returncode == 0 and not installed.exists()
    r = licensemanager(conf, "-d", USERS)
    assert r.returncode != 0 and "no installed key" in r.stderr
    r = licensemanager(conf, "-s")
    assert r.returncode != 0 and "No product key installed" in r.stdout


def _tamper(data: bytes) -> bytes:
    return data.replace(b"Units: 5", b"Units: 500")


def _forged(data: bytes) -> bytes:
    """Fields and checksum intact, signature of something else by the same-size key."""
    text = data.decode()
    head, _, sig = text.rpartition("Signature: ")
    raw = bytearray(__import__("base64").b64decode(sig))
    raw[0] ^= 0xFF
    return (head + "Signature: " + __import__("base64").b64encode(bytes(raw)).decode() + "\n").encode()


@pytest.mark.parametrize(("kind", "make", "message"), [
    ("bad signature", lambda pub, other: _forged(pub.key()), "bad signature (not made by publisher"),
    ("unknown publisher", lambda pub, other: other.key(), "signed by unknown publisher"),
    ("tampered", lambda pub, other: _tamper(pub.key()), "altered after it was issued (checksum mismatch)"),
    ("expired", lambda pub, other: pub.key(start_days=-400, days=-3), "expired on"),
    ("not yet valid", lambda pub, other: pub.key(start_days=5, days=400), "is not valid yet: valid from"),
    ("foreign product", lambda pub, other: pub.key(product="kav4fileservers"), "is for product 'kav4fileservers'"),
    ("garbage", lambda pub, other: b"\x7fELF\x02\x01\x01 this is no key\n", "not a kav4mailservers key file"),
    ("missing field", lambda pub, other: pub.key().replace(b"Licensee: Example Org\n", b""), "missing field Licensee"),
])
def test_each_bad_key_is_refused_with_its_own_line(site, tmp_path: Path, kind: str, make, message: str) -> None:  # noqa: ANN001
    conf, pub = site
    stranger = Publisher.create(tmp_path / "stranger", trusted=False)
    data = make(pub, stranger)
    r = add(conf, tmp_path, data)
    assert r.returncode != 0, kind
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "nothing installed" in err[0], (kind, err)
    assert not (tmp_path / "licenses").exists() or list((tmp_path / "licenses").iterdir()) == []
    r = licensemanager(conf, "-k", str(tmp_path / "new.key"))
    assert r.returncode != 0 and message in r.stderr


def test_an_installed_key_that_expired_is_listed_as_expired(site, tmp_path: Path) -> None:  # noqa: ANN001
    conf, pub = site
    (tmp_path / "licenses").mkdir()
    (tmp_path / "licenses" / "0003D3EA.key").write_bytes(pub.key(serial=USERS, start_days=-30, days=-2))
    (tmp_path / "licenses" / "BROKEN.key").write_bytes(b"junk\n")
    r = licensemanager(conf, "-s")
    assert r.returncode == 0
    assert f"serial {USERS}" in r.stdout and "(2 days ago)" in r.stdout and "expired" in r.stdout
    assert "License file BROKEN.key: not a kav4mailservers key file" in r.stdout
    r = licensemanager(conf, "-k", "0003D3EA.key")
    assert r.returncode != 0 and "expired" in r.stdout


def test_publisher_workflow_with_the_cli(tmp_path: Path) -> None:
    conf = write_config(tmp_path)
    r = licensemanager(None, "--new-publisher", str(tmp_path / "pubkeys"))
    assert r.returncode == 0, r.stderr
    priv = tmp_path / "pubkeys" / "publisher.key"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    (pubfile,) = (tmp_path / "pubkeys").glob("*.pub")
    out = tmp_path / "issued.key"
    r = licensemanager(None, "--issue", "--private-key", str(priv), "--type", "traffic", "--units", "20",
                       "--days", "30", "--licensee", "Mail Co", "--serial", TRAFFIC, "-o", str(out))
    assert r.returncode == 0, r.stderr
    r = licensemanager(conf, "-a", str(out))
    assert r.returncode != 0 and "unknown publisher" in r.stderr  # not trusted yet
    (tmp_path / "publishers").mkdir(exist_ok=True)
    (tmp_path / "publishers" / pubfile.name).write_bytes(pubfile.read_bytes())  # the admin trusts it
    r = licensemanager(conf, "-a", str(out))
    assert r.returncode == 0, r.stderr
    assert "in 30 days" in licensemanager(conf, "-s").stdout
    again = licensemanager(None, "--new-publisher", str(tmp_path / "pubkeys"))
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_users_list_is_for_root_only(site) -> None:  # noqa: ANN001
    conf, _ = site
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the real entry point, in a process that is no longer root
        code = 99
        out = os.fdopen(w, "w")
        sys.stdout = sys.stderr = out  # pytest's capture objects are not fd 1/2
        try:
            from runtime.license.cli import main  # (the interpreter under /root is not readable by nobody)

            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = main(["-c", str(conf), "--users"])
        except BaseException as exc:  # noqa: BLE001
            print(repr(exc))
        finally:
            out.flush()
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as inp:
        out = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1, out
    assert "--users lists the protected addresses and is for root only" in out
    assert licensemanager(conf, "--users").returncode == 0  # root may


def test_key_format_parse_errors_name_the_line() -> None:
    with pytest.raises(keyfile.Garbage, match=r"line 3: unknown field 'Colour'"):
        keyfile.parse(b"Format: kav4mailservers-key 1\n# c\nColour: blue\n")
    with pytest.raises(keyfile.Garbage, match="given twice"):
        keyfile.parse(b"Format: kav4mailservers-key 1\nFormat: kav4mailservers-key 1\n")
    with pytest.raises(keyfile.Garbage, match="bytes"):
        keyfile.parse(b"x" * (keyfile.MAX_SIZE + 1))


def test_man_page_documents_every_option_and_renders_cleanly() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "man" / "licensemanager.1"
    text = page.read_text().replace("\\-", "-")
    from runtime.license.cli import parser

    for action in parser()._actions:
        if action.option_strings and "-h" not in action.option_strings:
            assert any(f"{opt} " in text or f"{opt}\n" in text for opt in action.option_strings), action.option_strings
    assert "entitlement, not a lock" in text
    if shutil.which("groff"):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr
