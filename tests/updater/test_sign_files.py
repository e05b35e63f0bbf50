"""keepup2date and ClamAV 1.5's detached .sign files, end to end: a real HTTP mirror serving
``<db>-<version>.cvd.sign`` and ``.cdiff.sign`` made with a test CA, whose certificate is in
``certs/`` beside the configuration (freshclam's CVDCertsDirectory)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.updater import Mirror, MirrorServer, Pki, write_conf
from tests.support.updater import keepup2date as _run
from tests.support.updater import snapshot as _snapshot


def _sign(pki: Pki, mirror: Mirror, name: str, sign_name: str, data: bytes | None = None) -> None:
    body = data if data is not None else (mirror.root / name).read_bytes()
    (mirror.root / sign_name).write_text(f"#clamsign-1.0\n{pki.line(body)}\n")


def _site(tmp_path: Path, mirror: Mirror, with_certs: bool = True) -> tuple[Path, Path, Pki | None]:
    site = tmp_path / "site"
    site.mkdir()
    pki = Pki(site) if with_certs else None
    bases = tmp_path / "bases"
    bases.mkdir()
    key = mirror.key.write_public(tmp_path / "test.key")
    return write_conf(site / "kav4mailservers.conf", bases, {"path": {"BasesPublicKey": str(key)}}), bases, pki


def test_signed_containers_and_diffs_are_verified_and_a_bad_sign_file_refuses(
        tmp_path: Path, mirror: Mirror, server: MirrorServer) -> None:
    conf, bases, pki = _site(tmp_path, mirror)
    assert pki is not None
    _sign(pki, mirror, "main.cvd", "main-1.cvd.sign")
    _sign(pki, mirror, "daily.cvd", "daily-1.cvd.sign")
    r = _run(conf, "-g", server.url())
    assert r.returncode == 0, r.stderr
    report = (conf.parent / "keepup2date.log").read_text()
    assert "checked with 1 certificate(s) of " + str(conf.parent / "certs") in report
    assert "main.cvd signed by 'kav4ms test signer' (main-1.cvd.sign, verified)" in report
    assert "daily.cvd signed by 'kav4ms test signer' (daily-1.cvd.sign, verified)" in report

    # daily 2 as a .cdiff whose .sign signs something else: refused, set unchanged, exit != 0
    mirror.set_daily(2)
    _sign(pki, mirror, "daily-2.cdiff", "daily-2.cdiff.sign", data=b"some other file")
    before = _snapshot(bases)
    r = _run(conf, "-g", server.url())
    assert r.returncode == 2
    assert "daily-2.cdiff refused:" in r.stderr and "/daily-2.cdiff.sign:2: sha256 digest mismatch" in r.stderr
    assert _snapshot(bases) == before

    # the right .sign: the diff goes through
    _sign(pki, mirror, "daily-2.cdiff", "daily-2.cdiff.sign")
    r = _run(conf, "-g", server.url())
    assert r.returncode == 0, r.stderr
    assert "daily-2.cdiff signed by 'kav4ms test signer' (daily-2.cdiff.sign, verified)" in (
        conf.parent / "keepup2date.log").read_text()
    assert (bases / "daily.cld").exists()


def test_a_container_with_a_sign_file_of_an_unknown_signer_rests_on_its_rsa_signature(
        tmp_path: Path, mirror: Mirror, server: MirrorServer) -> None:
    conf, bases, pki = _site(tmp_path, mirror)
    assert pki is not None
    stranger = Pki(tmp_path / "elsewhere")  # its CA is not in site/certs
    _sign(stranger, mirror, "main.cvd", "main-1.cvd.sign")  # daily-1.cvd.sign: none at all
    r = _run(conf, "-g", server.url())
    assert r.returncode == 0, r.stderr
    report = (conf.parent / "keepup2date.log").read_text()
    assert "does not chain to a trusted certificate: main.cvd rests on its RSA signature" in report
    assert "no daily-1.cvd.sign: daily.cvd rests on its RSA signature" in report
    assert {"main.cvd", "daily.cvd"} <= set(os.listdir(bases))


def test_without_a_certs_directory_sign_files_are_not_consulted(tmp_path: Path, mirror: Mirror,
                                                                 server: MirrorServer) -> None:
    conf, bases, _ = _site(tmp_path, mirror, with_certs=False)
    (mirror.root / "main-1.cvd.sign").write_text("#clamsign-1.0\n220::pkcs7-pem:garbage\n")
    r = _run(conf, "-g", server.url())
    assert r.returncode == 0, r.stderr
    assert ".sign" not in (conf.parent / "keepup2date.log").read_text()
    assert "/main-1.cvd.sign" not in server.hits


def test_a_certs_directory_others_can_write_is_refused(tmp_path: Path, mirror: Mirror, server: MirrorServer) -> None:
    conf, bases, _ = _site(tmp_path, mirror)
    (conf.parent / "certs").chmod(0o777)
    r = _run(conf, "-g", server.url())
    assert r.returncode == 1
    assert f"{conf.parent / 'certs'}: writable by another user" in r.stderr
    assert os.listdir(bases) == []


def test_a_local_mirror_keeps_the_verified_sign_files(tmp_path: Path, mirror: Mirror, server: MirrorServer) -> None:
    conf, _, pki = _site(tmp_path, mirror)
    assert pki is not None
    _sign(pki, mirror, "main.cvd", "main-1.cvd.sign")
    _sign(pki, mirror, "daily.cvd", "daily-1.cvd.sign")
    rdir = tmp_path / "rdir"
    r = _run(conf, "-u", str(rdir), "-g", server.url())
    assert r.returncode == 0, r.stderr
    assert {"main.cvd", "daily.cvd", "main-1.cvd.sign", "daily-1.cvd.sign"} <= set(os.listdir(rdir))
    assert (rdir / "main-1.cvd.sign").read_bytes() == (mirror.root / "main-1.cvd.sign").read_bytes()
