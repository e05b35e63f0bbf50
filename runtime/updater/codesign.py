"""ClamAV 1.5's detached database signatures: ``<db>-<version>.cvd.sign`` and ``.cdiff.sign`` files.

Why: since ClamAV 1.5 (functionality level 230) the official mirrors publish, beside each container
and each diff, a ``.sign`` file with a PKCS#7 signature over the *whole* file by a certificate that
chains to a CA in freshclam's ``CVDCertsDirectory``; it exists because the older scheme (the RSA
signature in the header over an MD5 digest, runtime/engine/dsig.py) cannot be used under FIPS
limits. This module verifies those files with the certificates of a directory, so a mirror that
serves them can be checked without MD5. What the format is, from ClamAV's public sources
(libclamav_rust codesign.rs/cvd.rs, clamav-signature-util digital_sig.rs):

* the first line is ``#clamsign-1.0``; other lines starting with ``#`` and blank lines are skipped;
* each signature line is ``min_flevel:max_flevel:pkcs7-pem:BASE64`` (``max_flevel`` may be empty),
  BASE64 being the body of a PEM ``PKCS7`` block without its newlines;
* the PKCS#7 is a detached, binary-mode SignedData over the bytes of the signed file; the signer's
  certificate travels inside it and must chain to a certificate (``*.pem``/``*.crt``) of the
  trusted directory;
* lines whose level range excludes the verifier's level are skipped; a signature that is *invalid*
  is final (no fallback), one that merely cannot be verified (unknown CA) lets the next line try.

Only what a verifier needs is parsed here (a small DER reader): the certificates are read by
``cryptography``, which also checks every signature; digests weaker than SHA-256 are refused.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

HEADER = "#clamsign-1.0"
#: the functionality level this verifier claims: ClamAV 1.5.0's, the first that reads .sign files
FLEVEL = 230
MAX_SIGN_FILE = 1 << 20  # a .sign file is a few kB; anything larger is not one
MAX_CHAIN = 6

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_DATA = "1.2.840.113549.1.7.1"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
DIGESTS = {"2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256), "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384),
           "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512)}


class SignError(Exception):
    """The .sign file is malformed or its signature is invalid: refuse the file it signs."""


class CannotVerify(Exception):
    """Nothing in the .sign file could be checked with the trusted certificates (no usable line)."""


# -- DER -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tlv:
    tag: int
    value: bytes
    raw: bytes  # the whole element, for re-encoding and comparisons


def _tlvs(data: bytes, where: str) -> list[_Tlv]:
    """The elements of one DER level; definite lengths only (DER), bounded by ``data``."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise SignError(f"{where}: truncated DER")
        tag, first = data[i], data[i + 1]
        j = i + 2
        if first < 0x80:
            length = first
        else:
            n = first & 0x7F
            if n == 0 or n > 4 or j + n > len(data):
                raise SignError(f"{where}: bad DER length")
            length = int.from_bytes(data[j:j + n], "big")
            j += n
        if j + length > len(data):
            raise SignError(f"{where}: DER element runs past its container")
        out.append(_Tlv(tag, data[j:j + length], data[i:j + length]))
        i = j + length
    return out


def _oid(value: bytes) -> str:
    if not value:
        return ""
    parts = [value[0] // 40, value[0] % 40]
    n = 0
    for b in value[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(n)
            n = 0
    return ".".join(map(str, parts))


def _expect(items: list[_Tlv], index: int, tag: int, what: str, where: str) -> _Tlv:
    if index >= len(items) or items[index].tag != tag:
        raise SignError(f"{where}: PKCS#7 {what} missing or malformed")
    return items[index]


# -- the signature -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _SignerInfo:
    issuer: bytes
    serial: int
    digest_oid: str
    signed_attrs: _Tlv | None
    signature: bytes


def _parse_signed_data(der: bytes, where: str) -> list[_SignerInfo]:
    top = _tlvs(der, where)
    if len(top) != 1 or top[0].tag != 0x30:
        raise SignError(f"{where}: not a PKCS#7 structure")
    ci = _tlvs(top[0].value, where)
    if _oid(_expect(ci, 0, 0x06, "contentType", where).value) != OID_SIGNED_DATA:
        raise SignError(f"{where}: PKCS#7 is not SignedData")
    sd_seq = _tlvs(_expect(ci, 1, 0xA0, "content", where).value, where)
    sd = _tlvs(_expect(sd_seq, 0, 0x30, "SignedData", where).value, where)
    encap = _tlvs(_expect(sd, 2, 0x30, "encapContentInfo", where).value, where)
    if len(encap) != 1:
        raise SignError(f"{where}: PKCS#7 carries its content: not a detached signature")
    signer_infos = sd[-1]
    if signer_infos.tag != 0x31:
        raise SignError(f"{where}: PKCS#7 signerInfos missing")
    out = []
    for si in _tlvs(signer_infos.value, where):
        f = _tlvs(si.value, where)
        sid = _tlvs(_expect(f, 1, 0x30, "issuerAndSerialNumber", where).value, where)
        issuer = _expect(sid, 0, 0x30, "issuer", where).raw
        serial = int.from_bytes(_expect(sid, 1, 0x02, "serial", where).value, "big", signed=True)
        digest_alg = _tlvs(_expect(f, 2, 0x30, "digestAlgorithm", where).value, where)
        k = 3
        attrs = None
        if k < len(f) and f[k].tag == 0xA0:
            attrs, k = f[k], k + 1
        _expect(f, k, 0x30, "signatureAlgorithm", where)
        sig = _expect(f, k + 1, 0x04, "signature", where).value
        out.append(_SignerInfo(issuer, serial, _oid(_expect(digest_alg, 0, 0x06, "digest OID", where).value),
                               attrs, sig))
    if not out:
        raise SignError(f"{where}: PKCS#7 has no signer")
    return out


def _verify_with(cert: x509.Certificate, signature: bytes, data: bytes, algo: hashes.HashAlgorithm) -> None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), algo)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(algo))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, data)
    else:
        raise InvalidSignature(f"unsupported key type {type(key).__name__}")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """cryptography 38 (Debian bookworm) has no verify_directly_issued_by: check the signature here."""
    if cert.issuer != issuer.subject:
        return False
    try:
        algo = cert.signature_hash_algorithm
        _verify_with(issuer, cert.signature, cert.tbs_certificate_bytes, algo)  # type: ignore[arg-type]
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def _valid_at(cert: x509.Certificate, now: dt.datetime) -> bool:
    # cryptography >= 42 has the *_utc properties; 38 (Debian bookworm) only the naive UTC ones
    start = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before.replace(tzinfo=dt.UTC)
    end = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=dt.UTC)
    return start <= now <= end


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _chain_to_trusted(signer: x509.Certificate, bundled: list[x509.Certificate],
                      trusted: list[x509.Certificate], now: dt.datetime) -> bool:
    trusted_der = {c.tbs_certificate_bytes for c in trusted}
    cert = signer
    for _ in range(MAX_CHAIN):
        if not _valid_at(cert, now):
            return False
        if cert.tbs_certificate_bytes in trusted_der:
            return True
        issuers = [c for c in trusted + bundled if c is not cert and _is_ca(c) and _issued_by(cert, c)]
        if not issuers:
            return False
        cert = next((c for c in issuers if c.tbs_certificate_bytes in trusted_der), issuers[0])
    return False


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def verify_pkcs7(data: bytes, der: bytes, trusted: list[x509.Certificate], where: str,
                 now: dt.datetime | None = None) -> str:
    """Check a detached PKCS#7 over ``data``; returns the signer's common name.

    Raises SignError when a signature is present but wrong (tampered file, bad digest), and
    CannotVerify when the signer does not chain to ``trusted``.
    """
    now = now or dt.datetime.now(dt.UTC)
    infos = _parse_signed_data(der, where)
    try:
        bundled = pkcs7.load_der_pkcs7_certificates(der)
    except ValueError as exc:
        raise SignError(f"{where}: PKCS#7 certificates unreadable: {exc}") from None
    for info in infos:
        if info.digest_oid not in DIGESTS:
            raise SignError(f"{where}: digest {info.digest_oid} refused (SHA-256 or stronger only)")
        name, algo = DIGESTS[info.digest_oid]
        signer = next((c for c in bundled if c.serial_number == info.serial
                       and c.issuer.public_bytes() == info.issuer), None)
        if signer is None:
            raise SignError(f"{where}: the signer's certificate is not in the PKCS#7")
        if info.signed_attrs is None:
            signed = data
        else:
            attrs = {}
            for attr in _tlvs(info.signed_attrs.value, where):
                parts = _tlvs(attr.value, where)
                values = _tlvs(_expect(parts, 1, 0x31, "attribute values", where).value, where)
                attrs[_oid(_expect(parts, 0, 0x06, "attribute type", where).value)] = values
            digest = attrs.get(OID_MESSAGE_DIGEST)
            if not digest or digest[0].tag != 0x04:
                raise SignError(f"{where}: PKCS#7 signed attributes lack the message digest")
            if digest[0].value != hashlib.new(name, data).digest():
                raise SignError(f"{where}: {name} digest mismatch: the signed file was changed")
            ctype = attrs.get(OID_CONTENT_TYPE)
            if ctype and _oid(ctype[0].value) != OID_DATA:
                raise SignError(f"{where}: PKCS#7 content type is not data")
            signed = b"\x31" + info.signed_attrs.raw[1:]  # [0] IMPLICIT SET -> SET, as signed
        try:
            _verify_with(signer, info.signature, signed, algo())
        except InvalidSignature:
            raise SignError(f"{where}: signature by {_common_name(signer)!r} does not verify") from None
        if not _chain_to_trusted(signer, bundled, trusted, now):
            raise CannotVerify(f"{where}: signer {_common_name(signer)!r} does not chain to a trusted certificate")
        return _common_name(signer)
    raise CannotVerify(f"{where}: no signer")  # pragma: no cover - infos is never empty


def trusted_certificates(directory: Path) -> list[x509.Certificate]:
    """The CA certificates of ``*.pem``/``*.crt`` files in ``directory`` (freshclam's CVDCertsDirectory)."""
    certs: list[x509.Certificate] = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".pem", ".crt") and path.is_file():
            text = path.read_bytes()
            blocks = text.split(b"-----END CERTIFICATE-----")
            for block in blocks:
                if b"-----BEGIN CERTIFICATE-----" in block:
                    try:
                        certs.append(x509.load_pem_x509_certificate(block + b"-----END CERTIFICATE-----\n"))
                    except ValueError as exc:
                        raise SignError(f"{path}: unreadable certificate: {exc}") from None
    return certs


def certificates_for(directory: Path) -> list[x509.Certificate] | None:
    """The trusted certificates of ``directory``, or None when it does not exist or holds none.

    keepup2date runs as root: a directory or file that another user could write would let that
    user decide which databases are trusted, so such a directory is refused (SignError).
    """
    try:
        st = directory.lstat()
    except FileNotFoundError:
        return None
    problem = _writable_by_others(directory, st)
    if problem:
        raise SignError(problem)
    for path in directory.iterdir():
        if path.suffix in (".pem", ".crt"):
            problem = _writable_by_others(path, path.lstat())
            if problem:
                raise SignError(problem)
    return trusted_certificates(directory) or None


def _writable_by_others(path: Path, st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return f"{path}: a symbolic link; the certificates must be the directory's own files"
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        return f"{path}: writable by another user (owner uid {st.st_uid}, mode {st.st_mode & 0o7777:04o}); not trusted"
    return ""


def verify_sign_file(data: bytes, sign: bytes, trusted: list[x509.Certificate], where: str,
                     flevel: int = FLEVEL, now: dt.datetime | None = None) -> str:
    """Verify ``data`` with the ``.sign`` file contents ``sign``; returns the signer's name.

    ``where`` names the .sign file in errors (``file:line: reason``).
    """
    if len(sign) > MAX_SIGN_FILE:
        raise SignError(f"{where}: {len(sign)} bytes is not a .sign file")
    try:
        lines = sign.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise SignError(f"{where}: not a .sign file (not ASCII)") from None
    if not lines or not lines[0].startswith("#clamsign"):
        raise SignError(f"{where}:1: not a .sign file (expected {HEADER!r})")
    if lines[0].strip() != HEADER:
        raise SignError(f"{where}:1: unsupported version {lines[0].strip()!r} (expected {HEADER!r})")
    unverifiable: list[str] = []
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        at = f"{where}:{number}"
        if len(fields) != 4:
            raise SignError(f"{at}: expected min_flevel:max_flevel:format:signature, got {len(fields)} fields")
        low, high, fmt, body = fields
        if not low.isdigit() or (high and not high.isdigit()):
            raise SignError(f"{at}: functionality levels {low!r}:{high!r} are not numbers")
        if fmt != "pkcs7-pem":
            raise SignError(f"{at}: signature format {fmt!r} is not supported (pkcs7-pem only)")
        if not int(low) <= flevel <= (int(high) if high else flevel):
            continue
        try:
            der = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise SignError(f"{at}: signature is not base64") from None
        try:
            return verify_pkcs7(data, der, trusted, at, now)
        except CannotVerify as exc:
            unverifiable.append(str(exc))
    raise CannotVerify("; ".join(unverifiable) or f"{where}: no signature for functionality level {flevel}")


def sign_file_name(db: str, version: int, kind: str = "cvd") -> str:
    """``daily-27500.cvd.sign`` / ``daily-27500.cdiff.sign``: versioned, as ClamAV names them."""
    return f"{db}-{version}.{kind}.sign"
