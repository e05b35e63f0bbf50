"""Built-in test signatures: the EICAR test file and the prefixed variants of guide chapter 8.

An object is an EICAR test object when it *is* the test file: optionally one of the prefixes
CORR- SUSP- WARN- ERRO- CURE- DELE-, then the 68-byte EICAR string, then only whitespace, the
part from the EICAR string on being at most 128 bytes (EICAR's own rule).  Inside containers the
rule applies to each member, so an EICAR attachment or archive member is found by the same test.

Naming scheme in reports (documented in docs/aveserver-protocol.md):

====== ============ =================================
prefix status        name
====== ============ =================================
(none) INFECTED      ``EICAR-Test-File``
CURE-  INFECTED      ``EICAR-Test-File (curable)``     -> CURED when cure is requested
DELE-  INFECTED      ``EICAR-Test-File (delete)``      -> CURED + deleted when cure is requested
WARN-  WARNING       ``EICAR-Test-File (modified)``
SUSP-  SUSPICIOUS    ``EICAR-Test-File (unknown)``
CORR-  CORRUPTED     ``EICAR-Test-File (corrupted)``
ERRO-  ERROR         ``EICAR-Test-File (error)``
====== ============ =================================

The plain EICAR file cannot be disinfected (chapter 8): with cure requested it is CUREFAILED.
Cure of CURE- follows the guide's words "the text of the virus body is changed for CURE": the
prefix and the 68-byte body are replaced by the four bytes ``CURE``; trailing whitespace is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from .verdict import Status

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
assert len(EICAR) == 68
BASE_NAME = "EICAR-Test-File"
_WS = b" \t\r\n\x0b\x0c\x1a"


@dataclass(frozen=True, slots=True)
class Variant:
    prefix: bytes
    status: Status
    name: str
    curable: bool = False
    delete: bool = False


VARIANTS: dict[bytes, Variant] = {
    b"": Variant(b"", Status.INFECTED, BASE_NAME),
    b"CURE-": Variant(b"CURE-", Status.INFECTED, f"{BASE_NAME} (curable)", curable=True),
    b"DELE-": Variant(b"DELE-", Status.INFECTED, f"{BASE_NAME} (delete)", delete=True),
    b"WARN-": Variant(b"WARN-", Status.WARNING, f"{BASE_NAME} (modified)"),
    b"SUSP-": Variant(b"SUSP-", Status.SUSPICIOUS, f"{BASE_NAME} (unknown)"),
    b"CORR-": Variant(b"CORR-", Status.CORRUPTED, f"{BASE_NAME} (corrupted)"),
    b"ERRO-": Variant(b"ERRO-", Status.ERROR, f"{BASE_NAME} (error)"),
}
MAX_LEN = 128 + 5


def detect(data: bytes) -> Variant | None:
    """The EICAR variant that ``data`` is, or None."""
    if len(data) < 68 or len(data) > MAX_LEN:
        return None
    pos = data.find(EICAR, 0, 5 + 68)
    if pos not in (0, 5):
        return None
    variant = VARIANTS.get(data[:pos])
    if variant is None:
        return None
    rest = data[pos + 68 :]
    if len(data) - pos > 128 or rest.strip(_WS):
        return None
    return variant


def cure(data: bytes, variant: Variant) -> bytes:
    """The disinfected object for a curable variant (see the module docstring)."""
    pos = data.find(EICAR)
    return b"CURE" + data[pos + 68 :]
