"""What is in BasesPath: ``aveserver --list-bases`` and ``aveserver --list-viruses`` (guide 1.1, 4.2).

The guide's 5.5 release notes promise that "a list of detectable viruses can now be generated";
``--list-viruses`` prints every name the loaded database detects, one per line.
``--list-bases`` prints each container and file with its version and what was loaded from the
set, with the same one-line summary aveserver logs at load — including every unsupported kind
and its count, so an administrator sees what part of a ClamAV database this engine does not use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from . import eicar
from .dsig import PublicKey, load_key
from .signatures import SignatureSet, load_signatures
from .verdict import Status


def key_from_config(cfg: object) -> PublicKey:
    """``[path] BasesPublicKey`` (empty: ClamAV's published key)."""
    try:
        value = cfg.get("path", "BasesPublicKey")  # type: ignore[attr-defined]
    except KeyError:
        value = ""
    return load_key(value or None)


def list_bases(bases: Path, key: PublicKey, out: TextIO) -> int:
    """Print the database inventory; exit status 1 when a container was refused."""
    sigs = load_signatures(bases, None, key)
    out.write(f"database directory: {bases}\n")
    out.write(f"signing key: {key.origin}\n")
    for line in sigs.containers:
        out.write(f"container: {line}\n")
    for path in sigs.files:
        if path.suffix not in (".cvd", ".cld"):
            out.write(f"file: {path.name}\n")
    for err in sigs.refused:
        out.write(f"REFUSED: {err}\n")
    _write_errors(sigs, out)
    out.write(f"summary: {sigs.summary()}\n")
    return 1 if sigs.refused else 0


def list_viruses(bases: Path, key: PublicKey, out: TextIO) -> int:
    """Print every detectable name once, sorted; exit status 1 when a container was refused."""
    sigs = load_signatures(bases, None, key)
    builtin = [v.name for v in eicar.VARIANTS.values() if v.status is Status.INFECTED]
    for name in builtin + sigs.names():  # the built-in test signatures first (runtime/engine/eicar.py)
        out.write(name + "\n")
    for err in sigs.refused:
        out.write(f"# REFUSED: {err}\n")
    return 1 if sigs.refused else 0


def _write_errors(sigs: SignatureSet, out: TextIO) -> None:
    for err in sigs.errors[:20]:
        out.write(f"bad line: {err}\n")
    if len(sigs.errors) > 20:
        out.write(f"bad line: ... {len(sigs.errors) - 20} more\n")
