"""The product key file format (guide 5.4, 5.4.2) and its ed25519 signature.

A key is a small UTF-8 text file, one ``Field: value`` per line, ``#`` comments allowed::

    # kav4mailservers product key: an entitlement, not a lock (licensemanager(1))
    Format: kav4mailservers-key 1
    Serial: 0038-000419-0003D3EA
    Product: kav4mailservers
    Description: kav4mailservers for Unix mail servers (licence per e-mail address)
    Type: users
    Units: 5
    Issued: 2026-12-01
    Expires: 2027-12-01
    Licensee: Example Org
    Publisher: 5d0c2b8e41a7f3c9
    Checksum: sha256:<hex digest of the signed text>
    Signature: <base64 ed25519 signature of the signed text>

The *signed text* is the field lines from ``Format`` to ``Publisher`` exactly as written, each
ended by ``\\n`` (comments excluded).  ``Checksum`` is not a security measure (the signature is):
it lets licensemanager tell an admin "this file was edited after it was issued" apart from "this
signature is not the publisher's".  ``Type`` is ``users`` (protected e-mail addresses) or
``traffic`` (MB of Clean mail per day, the guide's "Daily traffic statistic").
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a signature is made or checked: every program logs key information
    # at start (5.4.2), and with no key installed that must not cost the ~20 ms cryptography takes to load
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "kav4mailservers-key 1"
PRODUCT = "kav4mailservers"
TYPES = ("users", "traffic")
SIGNED_FIELDS = ("Format", "Serial", "Product", "Description", "Type", "Units", "Issued", "Expires", "Licensee",
                 "Publisher")
TRAILER_FIELDS = ("Checksum", "Signature")
SERIAL = re.compile(r"^[0-9A-F]{4}-[0-9A-F]{6}-[0-9A-F]{8}$")
MAX_SIZE = 16384  # bounded work: a key is a few hundred bytes
DESCRIPTIONS = {
    "users": "kav4mailservers for Unix mail servers (licence per e-mail address)",
    "traffic": "kav4mailservers for Unix mail servers (licence per mail traffic volume)",
}


class KeyFileError(Exception):
    """A key that must not be installed or trusted; ``str()`` is the one line shown to the admin."""

    kind = "invalid"


class Garbage(KeyFileError):
    kind = "garbage"


class Tampered(KeyFileError):
    kind = "tampered"


class UnknownPublisher(KeyFileError):
    kind = "unknown-publisher"


class BadSignature(KeyFileError):
    kind = "bad-signature"


class ForeignProduct(KeyFileError):
    kind = "foreign-product"


class NotYetValid(KeyFileError):
    kind = "not-yet-valid"


class Expired(KeyFileError):
    kind = "expired"


def publisher_id(public: Ed25519PublicKey) -> str:
    """16 hex digits naming a publisher key (sha256 of the raw 32-byte public key)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class LicenceKey:
    serial: str
    product: str
    description: str
    type: str
    units: int
    issued: dt.date
    expires: dt.date
    licensee: str
    publisher: str
    signed_text: str
    checksum: str
    signature: bytes

    @property
    def file_name(self) -> str:
        """The guide's naming: the serial's last group, ``0003D3EA.key``."""
        return self.serial.rsplit("-", 1)[1] + ".key"

    def days_left(self, today: dt.date | None = None) -> int:
        return (self.expires - (today or dt.date.today())).days

    def state(self, today: dt.date | None = None) -> str:
        today = today or dt.date.today()
        if today < self.issued:
            return "not-yet-valid"
        return "expired" if today > self.expires else "valid"

    def check_dates(self, today: dt.date | None = None) -> None:
        today = today or dt.date.today()
        if today < self.issued:
            raise NotYetValid(f"key {self.serial} is not valid yet: valid from {fmt_date(self.issued)}")
        if today > self.expires:
            raise Expired(f"key {self.serial} expired on {fmt_date(self.expires)}")


def fmt_date(d: dt.date) -> str:
    """The guide's printed date form (5.4.2): ``04-07-2003``."""
    return d.strftime("%d-%m-%Y")


def _date(value: str, field: str, line: int) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Garbage(f"line {line}: {field}: {value!r} is not a date (YYYY-MM-DD)") from None


def parse(data: bytes) -> LicenceKey:
    """Parse without checking the signature; raises ``Garbage`` naming the line and field."""
    if len(data) > MAX_SIZE:
        raise Garbage(f"not a kav4mailservers key file: {len(data)} bytes (a key is under {MAX_SIZE})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Garbage("not a kav4mailservers key file: not UTF-8 text") from None
    fields: dict[str, str] = {}
    lines: dict[str, int] = {}
    signed: list[str] = []
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or name not in SIGNED_FIELDS + TRAILER_FIELDS:
            if not fields:
                raise Garbage(f"not a kav4mailservers key file (line {n}: {line[:40]!r})")
            raise Garbage(f"line {n}: unknown field {name[:40]!r}")
        if name in fields:
            raise Garbage(f"line {n}: {name} given twice")
        if name in SIGNED_FIELDS and any(t in fields for t in TRAILER_FIELDS):
            raise Garbage(f"line {n}: {name} after Checksum/Signature")
        fields[name] = value.strip()
        lines[name] = n
        if name in SIGNED_FIELDS:
            signed.append(line)
    if fields.get("Format") != FORMAT:
        if "Format" not in fields:
            raise Garbage("not a kav4mailservers key file (no Format line)")
        raise Garbage(f"line {lines['Format']}: Format: {fields['Format']!r} is not {FORMAT!r}")
    for name in SIGNED_FIELDS + TRAILER_FIELDS:
        if name not in fields:
            raise Garbage(f"missing field {name}")
    if [line.partition(":")[0].strip() for line in signed] != list(SIGNED_FIELDS):
        raise Garbage(f"fields out of order (expected {', '.join(SIGNED_FIELDS)})")
    serial = fields["Serial"]
    if not SERIAL.match(serial):
        raise Garbage(f"line {lines['Serial']}: Serial: {serial!r} is not NNNN-NNNNNN-NNNNNNNN (hex digits)")
    ktype = fields["Type"]
    if ktype not in TYPES:
        raise Garbage(f"line {lines['Type']}: Type: {ktype!r} is not one of {', '.join(TYPES)}")
    try:
        units = int(fields["Units"])
        if units <= 0:
            raise ValueError
    except ValueError:
        raise Garbage(f"line {lines['Units']}: Units: {fields['Units']!r} is not a positive number") from None
    try:
        signature = base64.b64decode(fields["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise Garbage(f"line {lines['Signature']}: Signature is not base64") from None
    return LicenceKey(
        serial=serial,
        product=fields["Product"],
        description=fields["Description"],
        type=ktype,
        units=units,
        issued=_date(fields["Issued"], "Issued", lines["Issued"]),
        expires=_date(fields["Expires"], "Expires", lines["Expires"]),
        licensee=fields["Licensee"],
        publisher=fields["Publisher"],
        signed_text="".join(line + "\n" for line in signed),
        checksum=fields["Checksum"],
        signature=signature,
    )


def checksum(signed_text: str) -> str:
    return "sha256:" + hashlib.sha256(signed_text.encode("utf-8")).hexdigest()


def verify(data: bytes, publishers: dict[str, Ed25519PublicKey], today: dt.date | None = None,
           check_dates: bool = True) -> LicenceKey:
    """Parse and verify a key, in the order that gives the most useful one-line reason.

    garbage -> tampered (checksum) -> unknown publisher -> bad signature -> foreign product ->
    not yet valid -> expired.  ``check_dates=False`` is for listing installed keys, where an expired
    key is shown as expired rather than refused.
    """
    key = parse(data)
    if checksum(key.signed_text) != key.checksum:
        raise Tampered(f"key {key.serial} was altered after it was issued (checksum mismatch)")
    public = publishers.get(key.publisher)
    if public is None:
        raise UnknownPublisher(f"key {key.serial} is signed by unknown publisher {key.publisher!r} "
                               "(add its .pub to LicensePublishersPath if you trust it)")
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(key.signature, key.signed_text.encode("utf-8"))
    except InvalidSignature:
        raise BadSignature(f"key {key.serial}: bad signature (not made by publisher {key.publisher})") from None
    if key.product != PRODUCT:
        raise ForeignProduct(f"key {key.serial} is for product {key.product!r}, not {PRODUCT}")
    if check_dates:
        key.check_dates(today)
    return key


def issue(private: Ed25519PrivateKey, *, serial: str, ktype: str, units: int, issued: dt.date, expires: dt.date,
          licensee: str, product: str = PRODUCT, description: str | None = None) -> bytes:
    """A signed key file, for a publisher (``licensemanager --issue``)."""
    if ktype not in TYPES:
        raise ValueError(f"type must be one of {', '.join(TYPES)}")
    if not SERIAL.match(serial):
        raise ValueError(f"serial {serial!r} is not NNNN-NNNNNN-NNNNNNNN (hex digits)")
    if units <= 0:
        raise ValueError("units must be positive")
    if expires < issued:
        raise ValueError("expiry date before issue date")
    values = {
        "Format": FORMAT,
        "Serial": serial,
        "Product": product,
        "Description": description or DESCRIPTIONS[ktype],
        "Type": ktype,
        "Units": str(units),
        "Issued": issued.isoformat(),
        "Expires": expires.isoformat(),
        "Licensee": licensee,
        "Publisher": publisher_id(private.public_key()),
    }
    for name, value in values.items():
        if "\n" in value or "\r" in value or value != value.strip():
            raise ValueError(f"{name}: one line without surrounding blanks, please")
    signed = "".join(f"{name}: {value}\n" for name, value in values.items())
    sig = base64.b64encode(private.sign(signed.encode("utf-8"))).decode("ascii")
    head = "# kav4mailservers product key: an entitlement, not a lock (see licensemanager(1))\n"
    return (head + signed + f"Checksum: {checksum(signed)}\nSignature: {sig}\n").encode("utf-8")
