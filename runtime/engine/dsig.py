"""The digital signature in a ClamAV CVD header, and the key that verifies it.

A CVD header carries the MD5 of the compressed payload and a ``dsig``: an RSA signature over that
MD5, written as a number in a 64-character alphabet (``a-z A-Z 0-9 + /``), least significant
digit first.  Verification raises the number to the public exponent modulo the public modulus;
the low 16 bytes of the result, most significant first, must be the header's MD5 and nothing may
remain above them (ClamAV 0.103+ refuses a result wider than the digest the same way).

The scheme is textbook RSA without padding over MD5 — weak by today's standards, but it is what
the published databases carry, and the MD5 is itself checked against the payload.  keepup2date
(guide 5.1) verifies downloads with this same module.

The key is ``[path] BasesPublicKey`` (guide 4.1): a file holding ``N E`` in decimal (ClamAV writes
its key this way); empty means ClamAV's published database key, so a private mirror or the tests
can sign their own databases.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
DIGEST_LEN = 16  # the signed value is an MD5
MAX_DSIG_CHARS = 1024  # a 4096-bit signature needs 683 digits; anything longer is garbage


class SignatureInvalid(ValueError):
    """The dsig is malformed or does not sign this MD5 with the configured key."""


@dataclass(frozen=True)
class PublicKey:
    """An RSA public key (modulus ``n``, exponent ``e``) and where it came from (for log lines)."""

    n: int
    e: int
    origin: str = "ClamAV's published database key"

    @classmethod
    def from_file(cls, path: Path | str) -> PublicKey:
        """Read ``N E`` (decimal, whitespace or ``:`` separated; ``#`` comments allowed)."""
        path = Path(path)
        words: list[str] = []
        for line in path.read_text(encoding="ascii", errors="replace").splitlines():
            words.extend(line.split("#", 1)[0].replace(":", " ").split())
        if len(words) != 2 or not all(w.isdigit() for w in words):
            raise ValueError(f"{path}:1: BasesPublicKey: expected two decimal numbers 'N E'")
        n, e = int(words[0]), int(words[1])
        if n < 2**255 or e < 3:
            raise ValueError(f"{path}:1: BasesPublicKey: modulus too small or exponent < 3")
        return cls(n, e, str(path))


# ClamAV's published CVD signing key (a public constant: modulus and exponent, both decimal).
CLAMAV_KEY = PublicKey(
    int(
        "1186409955516453426030700016584531897515277744120277437465994057432431426074641447673610606406558447497607"
        "8889002228342492276248891756555100246777110966959818941043469903453223222862159108950817859142845622079684"
        "1621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037"
    ),
    100001027,
)


def decode_number(dsig: str) -> int:
    """The dsig text as an integer (base 64 in ClamAV's alphabet, least significant digit first)."""
    if not dsig or len(dsig) > MAX_DSIG_CHARS:
        raise SignatureInvalid(f"dsig has {len(dsig)} characters")
    value = 0
    for ch in reversed(dsig):
        digit = _VALUE.get(ch)
        if digit is None:
            raise SignatureInvalid(f"dsig holds {ch!r}, outside ClamAV's alphabet")
        value = value * 64 + digit
    return value


def encode_number(value: int) -> str:
    """Inverse of :func:`decode_number` (used by the signer of test and private-mirror databases)."""
    digits = []
    while True:
        value, digit = divmod(value, 64)
        digits.append(ALPHABET[digit])
        if not value:
            return "".join(digits)


def recover_digest(dsig: str, key: PublicKey) -> bytes:
    """What the signature signs, as 16 bytes; raises when the result is wider than an MD5."""
    c = decode_number(dsig)
    if c >= key.n:
        raise SignatureInvalid(f"digital signature does not match: larger than the modulus of {key.origin}")
    m = pow(c, key.e, key.n)
    if m >> (8 * DIGEST_LEN):
        raise SignatureInvalid(f"digital signature does not match: it decodes to more than an MD5 (key: {key.origin})")
    return m.to_bytes(DIGEST_LEN, "big")


def verify(md5_hex: str, dsig: str, key: PublicKey = CLAMAV_KEY) -> None:
    """Raise SignatureInvalid unless ``dsig`` signs ``md5_hex`` under ``key``."""
    if len(md5_hex) != 32 or any(c not in "0123456789abcdefABCDEF" for c in md5_hex):
        raise SignatureInvalid(f"header MD5 {md5_hex[:40]!r} is not 32 hex digits")
    got = recover_digest(dsig, key)
    if not hmac.compare_digest(got, bytes.fromhex(md5_hex)):
        raise SignatureInvalid(f"digital signature does not match (key: {key.origin})")


def sign(md5_hex: str, n: int, d: int) -> str:
    """The dsig of an MD5 under the private exponent ``d`` (for our own test or mirror keys)."""
    return encode_number(pow(int(md5_hex, 16), d, n))


def load_key(path: str | Path | None) -> PublicKey:
    """``[path] BasesPublicKey``: empty means ClamAV's key; otherwise the named key file."""
    if not path:
        return CLAMAV_KEY
    return PublicKey.from_file(path)
