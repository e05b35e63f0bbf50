"""Trusted key publishers: the package's ``publishers/`` directory plus ``[path] LicensePublishersPath``.

A publisher is an ed25519 public key in a ``*.pub`` PEM file; it is named by its id
(``keyfile.publisher_id``), never by the file name, so a renamed or copied file cannot
impersonate another publisher.  Unreadable or malformed files are reported, not fatal: one broken
file must not make every installed key look untrusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded when a publisher key is read (runtime.license.keyfile says why)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from runtime.config import KavConfig
from runtime.license.keyfile import publisher_id

PACKAGE_DIR = Path(__file__).resolve().parent / "publishers"


def publisher_dirs(cfg: KavConfig) -> list[Path]:
    return [PACKAGE_DIR, Path(cfg.get("path", "LicensePublishersPath"))]


def load(dirs: list[Path]) -> tuple[dict[str, Ed25519PublicKey], list[str]]:
    """(publisher id -> public key, one-line problems with files that were skipped)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    found: dict[str, Ed25519PublicKey] = {}
    problems: list[str] = []
    for d in dirs:
        try:
            names = sorted(p for p in d.iterdir() if p.suffix == ".pub")
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{d}: {exc.strerror}")
            continue
        for path in names:
            try:
                data = path.read_bytes()[:8192]
                key = serialization.load_pem_public_key(data)
            except (OSError, ValueError) as exc:
                problems.append(f"{path}: not a PEM public key ({exc.__class__.__name__})")
                continue
            if not isinstance(key, Ed25519PublicKey):
                problems.append(f"{path}: not an ed25519 key")
                continue
            found[publisher_id(key)] = key
    return found, problems


def for_config(cfg: KavConfig) -> tuple[dict[str, Ed25519PublicKey], list[str]]:
    return load(publisher_dirs(cfg))


def new_publisher(directory: Path) -> tuple[Path, Path]:
    """Create a publisher key pair: ``publisher.key`` (0600) and ``<id>.pub``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from runtime.fsutil import atomic_write

    directory.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pid = publisher_id(private.public_key())
    priv_path = directory / "publisher.key"
    if priv_path.exists():
        raise FileExistsError(f"{priv_path} exists: refusing to overwrite a publisher's private key")
    atomic_write(priv_path, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), mode=0o600)
    pub_path = directory / f"{pid}.pub"
    atomic_write(pub_path, public_pem(private.public_key()), mode=0o644)
    return priv_path, pub_path


def public_pem(public: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an ed25519 private key")
    return key
