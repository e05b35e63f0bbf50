"""ClamAV 1.5's detached ``.sign`` files (runtime/updater/codesign.py), with keys made here: a test
CA and signer, signatures made by ``cryptography`` and by the ``openssl smime`` command (OpenSSL's
PKCS7_sign, what ClamAV's sigtool calls), over a real signed container."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from runtime.updater.codesign import (
    FLEVEL,
    CannotVerify,
    SignError,
    sign_file_name,
    trusted_certificates,
    verify_sign_file,
)
from tests.support.updater import Mirror, Pki, make_cert


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def cvd(tmp_path: Path) -> bytes:
    return (Mirror(tmp_path / "mirror").build(daily=1).root / "daily.cvd").read_bytes()


def _verify(data: bytes, sign: str, pki: Pki, **kw: object) -> str:
    return verify_sign_file(data, sign.encode(), trusted_certificates(pki.certs), "daily-1.cvd.sign", **kw)


def test_a_container_signed_by_a_trusted_signer_verifies(pki: Pki, cvd: bytes) -> None:
    sign = f"#clamsign-1.0\n# comment\n\n{pki.line(cvd)}\n"
    assert _verify(cvd, sign, pki) == "kav4ms test signer"
    assert sign_file_name("daily", 27500) == "daily-27500.cvd.sign"
    assert sign_file_name("daily", 27500, "cdiff") == "daily-27500.cdiff.sign"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_a_signature_made_by_openssl_pkcs7_sign_verifies(pki: Pki, cvd: bytes, tmp_path: Path) -> None:
    """``openssl smime -sign -binary`` (detached by default): OpenSSL's PKCS7_sign with the default
    signed attributes (content type, signing time, S/MIME capabilities, message digest)."""
    (tmp_path / "daily.cvd").write_bytes(cvd)
    (tmp_path / "signer.pem").write_bytes(pki.signer.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "signer.key").write_bytes(pki.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pem = subprocess.run(["openssl", "smime", "-sign", "-binary", "-md", "sha256", "-in", str(tmp_path / "daily.cvd"),
                          "-signer", str(tmp_path / "signer.pem"), "-inkey", str(tmp_path / "signer.key"),
                          "-outform", "PEM"], capture_output=True, check=True).stdout.decode()
    body = "".join(ln for ln in pem.splitlines() if not ln.startswith("-----"))
    assert _verify(cvd, f"#clamsign-1.0\n220::pkcs7-pem:{body}\n", pki) == "kav4ms test signer"
    with pytest.raises(SignError, match="digest mismatch"):
        _verify(cvd[:-1] + bytes([cvd[-1] ^ 1]), f"#clamsign-1.0\n220::pkcs7-pem:{body}\n", pki)


def test_a_changed_byte_anywhere_is_refused(pki: Pki, cvd: bytes) -> None:
    sign = f"#clamsign-1.0\n{pki.line(cvd)}\n"
    for at in (10, 600, len(cvd) - 1):  # header, payload, last byte
        changed = cvd[:at] + bytes([cvd[at] ^ 0x20]) + cvd[at + 1:]
        with pytest.raises(SignError, match="sha256 digest mismatch: the signed file was changed"):
            _verify(changed, sign, pki)


def test_a_signer_outside_the_trusted_certificates_cannot_verify(pki: Pki, cvd: bytes) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_ca = make_cert("someone else's CA", other_key, ca=True)
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = make_cert("stranger", stranger_key, (other_ca, other_key))
    with pytest.raises(CannotVerify, match="'stranger' does not chain to a trusted certificate"):
        _verify(cvd, f"#clamsign-1.0\n{pki.line(cvd, stranger, stranger_key)}\n", pki)
    # ClamAV's rule: an unverifiable line lets the next one try
    sign = f"#clamsign-1.0\n{pki.line(cvd, stranger, stranger_key)}\n{pki.line(cvd)}\n"
    assert _verify(cvd, sign, pki) == "kav4ms test signer"
    # a self-signed signer is not trusted because it signs
    self_signed = make_cert("self", stranger_key)
    with pytest.raises(CannotVerify):
        _verify(cvd, f"#clamsign-1.0\n{pki.line(cvd, self_signed, stranger_key)}\n", pki)


def test_an_expired_signer_certificate_cannot_verify(pki: Pki, cvd: bytes) -> None:
    old = make_cert("kav4ms test signer", pki.key, (pki.ca, pki.ca_key), days=-1, start=-30)
    with pytest.raises(CannotVerify):
        _verify(cvd, f"#clamsign-1.0\n{pki.line(cvd, old)}\n", pki)


def test_weak_digests_are_refused(pki: Pki, cvd: bytes) -> None:
    with pytest.raises(SignError, match="SHA-256 or stronger"):
        _verify(cvd, f"#clamsign-1.0\n{pki.line(cvd, algo=hashes.SHA224())}\n", pki)
    assert _verify(cvd, f"#clamsign-1.0\n{pki.line(cvd, algo=hashes.SHA512())}\n", pki) == "kav4ms test signer"


def test_functionality_levels_select_the_lines(pki: Pki, cvd: bytes) -> None:
    assert _verify(cvd, f"#clamsign-1.0\n{pki.line(cvd, levels=f'220:{FLEVEL}')}\n", pki)
    with pytest.raises(CannotVerify, match="no signature for functionality level"):
        _verify(cvd, f"#clamsign-1.0\n{pki.line(cvd, levels=f'{FLEVEL + 1}:')}\n", pki)
    with pytest.raises(CannotVerify):
        _verify(cvd, f"#clamsign-1.0\n{pki.line(cvd, levels='100:200')}\n", pki)


@pytest.mark.parametrize(("text", "message"), [
    ("", ":1: not a .sign file"),
    ("220::pkcs7-pem:AAAA\n", ":1: not a .sign file"),
    ("#clamsign-2.0\n", ":1: unsupported version '#clamsign-2.0'"),
    ("#clamsign-1.0\n220:pkcs7-pem:AAAA\n", ":2: expected min_flevel:max_flevel:format:signature, got 3 fields"),
    ("#clamsign-1.0\nx::pkcs7-pem:AAAA\n", ":2: functionality levels 'x':'' are not numbers"),
    ("#clamsign-1.0\n220::rsa-raw:AAAA\n", ":2: signature format 'rsa-raw' is not supported"),
    ("#clamsign-1.0\n\n220::pkcs7-pem:!!!\n", ":3: signature is not base64"),
    ("#clamsign-1.0\n220::pkcs7-pem:MAA=\n", ":2: PKCS#7"),
    ("#clamsign-1.0\n220::pkcs7-pem:MIIBAAA=\n", ":2: DER element runs past its container"),
])
def test_malformed_sign_files_name_the_file_and_line(pki: Pki, cvd: bytes, text: str, message: str) -> None:
    with pytest.raises(SignError) as info:
        _verify(cvd, text, pki)
    assert str(info.value).startswith("daily-1.cvd.sign") and message in str(info.value), str(info.value)


def test_an_attached_signature_is_not_a_detached_one(pki: Pki, cvd: bytes) -> None:
    der = (pkcs7.PKCS7SignatureBuilder().set_data(cvd).add_signer(pki.signer, pki.key, hashes.SHA256())
           .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    with pytest.raises(SignError, match="not a detached signature"):
        _verify(cvd, f"#clamsign-1.0\n220::pkcs7-pem:{base64.b64encode(der).decode()}\n", pki)
