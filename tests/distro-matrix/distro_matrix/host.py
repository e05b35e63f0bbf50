"""Whether this host can run the chroot backend at all (root, namespaces, overlayfs, tools)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def host_problem() -> str | None:
    """Why the matrix cannot run on this host, or None. Root and real namespaces are required."""
    if os.geteuid() != 0:
        return "needs root (mmdebstrap, mount -t overlay, unshare, chroot)"
    for tool in ("mmdebstrap", "unshare", "nsenter", "chroot", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/setup-host.sh installs it)"
    probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot create namespaces here: {probe.stderr.decode(errors='replace').strip()}"
    if "overlay" not in Path("/proc/filesystems").read_text():
        subprocess.run(["modprobe", "overlay"], capture_output=True)
        if "overlay" not in Path("/proc/filesystems").read_text():
            return "kernel has no overlayfs"
    return None
