"""keepup2date through Debian's tinyproxy (BasicAuth, guide 5.1.5) and with dnsmasq answering
ClamAV's version TXT record for the official-layout source (a server list entry with txt=)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.updater import Mirror, MirrorServer, start_dnsmasq, start_tinyproxy, write_conf
from tests.support.updater import keepup2date as run


def conf_for(tmp: Path, mirror: Mirror, name: str, options: dict[str, str]) -> tuple[Path, Path]:
    bases = tmp / f"bases-{name}"
    bases.mkdir()
    key = mirror.key.write_public(tmp / "test.key")
    return write_conf(tmp / f"{name}.conf", bases, {"path": {"BasesPublicKey": str(key)},
                                                    "updater.options": options}), bases


@pytest.mark.skipif(not shutil.which("tinyproxy"), reason="tinyproxy not installed (scripts/setup-host.sh)")
def test_proxy_with_and_without_credentials(tmp_path: Path, mirror: Mirror, server: MirrorServer) -> None:
    proxy = start_tinyproxy(tmp_path, "kav", "s3cret")
    try:
        good = f"http://kav:s3cret@127.0.0.1:{proxy.port}"
        conf, bases = conf_for(tmp_path, mirror, "auth", {"UseProxy": "yes", "ProxyAddress": good})
        r = run(conf, "-g", server.url())
        assert r.returncode == 0, r.stderr
        assert (bases / "daily.cvd").exists()
        log = (tmp_path / "keepup2date.log").read_text()
        assert f"proxy http://127.0.0.1:{proxy.port}" in log and "s3cret" not in log  # never the password

        conf, bases = conf_for(tmp_path, mirror, "noauth",
                               {"UseProxy": "yes", "ProxyAddress": f"http://127.0.0.1:{proxy.port}"})
        r = run(conf, "-g", server.url())
        assert r.returncode == 2
        assert "the proxy refused authentication (HTTP 407)" in r.stderr, r.stderr
        assert not (bases / "daily.cvd").exists()

        conf, bases = conf_for(tmp_path, mirror, "wrong",
                               {"UseProxy": "yes", "ProxyAddress": f"http://kav:nope@127.0.0.1:{proxy.port}"})
        r = run(conf, "-g", server.url())
        assert r.returncode == 2 and "refused the credentials" in r.stderr, r.stderr

        # http_proxy counts when UseProxy is missing (5.1.5) ...
        conf, bases = conf_for(tmp_path, mirror, "env", {})
        server.hits.clear()
        r = run(conf, "-g", server.url(), env={"http_proxy": good})
        assert r.returncode == 0, r.stderr
        assert (bases / "daily.cvd").exists()
        assert f"proxy http://127.0.0.1:{proxy.port}" in (tmp_path / "keepup2date.log").read_text().split(
            "BasesPath " + str(bases))[1]
        # ... and not when UseProxy=no: a dead proxy in the environment does not matter
        conf, bases = conf_for(tmp_path, mirror, "off", {"UseProxy": "no"})
        r = run(conf, "-g", server.url(), env={"http_proxy": "http://127.0.0.1:9"})
        assert r.returncode == 0, r.stderr
    finally:
        proxy.stop()


@pytest.mark.skipif(not shutil.which("dnsmasq"), reason="dnsmasq not installed (scripts/setup-host.sh)")
def test_dns_txt_version_check(tmp_path: Path, mirror: Mirror, server: MirrorServer) -> None:
    name = "current.cvd.kav4ms.test"
    listing = tmp_path / "servers.list"
    listing.write_text(f"# test list\n{server.url()} txt={name}\n")
    dns = start_dnsmasq(tmp_path, name, "0.103.11:1:1:1700000000:1:90:0:0")
    try:
        opts = {"DnsServer": f"127.0.0.1:{dns.port}", "UseUpdateServerUrlOnly": "no"}
        conf, bases = conf_for(tmp_path, mirror, "dns", opts)
        text = conf.read_text().replace("[updater.path]\n", f"[updater.path]\nServerListFile={listing}\n")
        conf.write_text(text)
        r = run(conf)
        assert r.returncode == 0, r.stderr
        assert "announces bytecode 0, daily 1, main 1" in (tmp_path / "keepup2date.log").read_text()
        assert (bases / "daily.cvd").exists()
        # nothing new announced: not a single request reaches the mirror
        server.hits.clear()
        assert run(conf).returncode == 0
        assert server.hits == []
    finally:
        dns.stop()
    # daily 2 announced: it arrives as a .cdiff
    mirror.set_daily(2)
    dns = start_dnsmasq(tmp_path, name, "0.103.11:1:2:1700003600:1:90:0:0")
    try:
        conf.write_text(conf.read_text().replace(f"127.0.0.1:{opts['DnsServer'].split(':')[1]}",
                                                 f"127.0.0.1:{dns.port}"))
        server.hits.clear()
        r = run(conf)
        assert r.returncode == 0, r.stderr
        assert server.hits == ["/ok/daily-2.cdiff"]
        assert (bases / "daily.cld").exists()
    finally:
        dns.stop()
