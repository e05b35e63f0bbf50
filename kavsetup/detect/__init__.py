"""Read-only detection of the OS, the MTA(s), their versions and files (guide 3.4, 1.2).

``detect(root)`` looks at a live system (``root=/``) or any tree treated as ``/`` and returns a
frozen ``System`` (see ``model.py``, the contract consumed by ``kavsetup/mta``).  It
never writes, and it never raises for a bad file: unreadable configuration, broken symlinks and
unknown systems become ``System.problems`` entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kavsetup.detect.model import (
    SCHEMA_VERSION,
    EximInfo,
    GateResult,
    GateVerdict,
    GroupEntry,
    InitSystem,
    MTADetails,
    MTAInfo,
    MTAKind,
    OSFamily,
    OSInfo,
    PackageFormat,
    PostfixInfo,
    Problem,
    QmailInfo,
    SendmailInfo,
    System,
    UserEntry,
    Users,
    Version,
    check_version,
)

#: Exit status of ``kavsetup detect``/``kavsetup install`` when the version gate refuses.
EXIT_UNSUPPORTED = 2


if TYPE_CHECKING:
    from kavsetup.detect.rootfs import RootFS

def detect(root: Path | str = Path("/"), *, run_binaries: bool = True, fs: RootFS | None = None) -> System:
    """Detect everything under ``root``.  ``run_binaries=False`` forbids running the MTA's own
    tools (postconf, exim -bV) even where they could run, e.g. for reproducible fixture tests.
    ``fs`` reads the tree another way (``kavsetup reconfigure`` sees it as it was before our
    integration: kavsetup/integrate/reconfigure.py)."""
    from kavsetup.detect.system import detect_system

    return detect_system(Path(root), run_binaries=run_binaries, fs=fs)


__all__ = [
    "SCHEMA_VERSION", "EximInfo", "GateResult", "GateVerdict", "GroupEntry", "InitSystem",
    "MTADetails", "MTAInfo", "MTAKind", "OSFamily", "OSInfo", "PackageFormat", "PostfixInfo",
    "Problem", "QmailInfo", "SendmailInfo", "System", "UserEntry", "Users", "Version",
    "EXIT_UNSUPPORTED", "check_version", "detect",
]
