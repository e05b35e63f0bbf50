"""Test publishers and keys: every licence test makes its own publisher (no key ships with the project)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime.license import keyfile, publishers

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Publisher:
    private: Ed25519PrivateKey
    directory: Path  # where its .pub is (the config's LicensePublishersPath)
    private_path: Path

    @classmethod
    def create(cls, root: Path, trusted: bool = True) -> Publisher:
        """A publisher whose public key is in ``root/publishers`` when ``trusted``."""
        private = Ed25519PrivateKey.generate()
        pubdir = root / "publishers"
        pubdir.mkdir(parents=True, exist_ok=True)
        if trusted:
            (pubdir / f"{keyfile.publisher_id(private.public_key())}.pub").write_bytes(
                publishers.public_pem(private.public_key()))
        priv_path = root / f"publisher-{keyfile.publisher_id(private.public_key())}.key"
        from cryptography.hazmat.primitives import serialization

        priv_path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        priv_path.chmod(0o600)
        return cls(private, pubdir, priv_path)

    def key(self, ktype: str = "users", units: int = 5, days: int = 365, start_days: int = -1,
            serial: str = "0038-000419-0003D3EA", product: str = keyfile.PRODUCT,
            licensee: str = "Example Org") -> bytes:
        today = dt.date.today()
        return keyfile.issue(self.private, serial=serial, ktype=ktype, units=units,
                             issued=today + dt.timedelta(days=start_days), expires=today + dt.timedelta(days=days),
                             licensee=licensee, product=product)


def licence_paths(root: Path) -> dict[str, object]:
    """The ``[path]`` keys that put keys, publishers and the accounting store under ``root``."""
    return {"LicensePath": root / "licenses", "LicensePublishersPath": root / "publishers",
            "LicenseStatePath": root / "licensing"}


def write_config(root: Path, domains: str = r".*@example\.com$") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "kav4mailservers.conf"
    lines = ["[path]", *(f"{k}={v}" for k, v in licence_paths(root).items()), "",
             "[smtpscan.license]", f"LicenseDomains={domains}", ""]
    conf.write_text("\n".join(lines))
    return conf


def licensemanager(conf: Path | None, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point (as another uid when ``user`` is given and we are root)."""
    cmd = [sys.executable, "-m", "runtime.license.cli", *(["-c", str(conf)] if conf else []), *args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    kw: dict[str, object] = {}
    if user is not None:
        kw["user"] = user
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, **kw)  # type: ignore[call-overload]
