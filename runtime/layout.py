"""Where kav4mailservers lives on each OS family: the one home of its directory names.

Why a module of its own: the configuration directory, the state tree and the program prefix are
named by the runtime's defaults (``-c`` of every daemon, the schema's path defaults), by kavsetup
(where it writes kav4mailservers.conf and its journal), by the package stager (pkg/common/stage.py)
and by the FreeBSD port (pkg/freebsd/Makefile and pkg-plist, checked against this module by
pkg/freebsd/build.py). One table keeps them from disagreeing (issue 17).

Linux (Debian, RHEL, SUSE: FHS): configuration in ``/etc/kav/5.5``, state in ``/var/lib/kav/5.5``
with ``/var/db/kav`` a link to it, so the guide's ``/var/db/kav/5.5/...`` paths (4.2, 5.1, 6.1.1)
in the configuration defaults keep working. FreeBSD (hier(7), the ports' conventions): what a port
installs lives under ``/usr/local`` (configuration in ``/usr/local/etc/kav/5.5``), state in
``/var/db/kav/5.5`` (the guide's own path, no link needed). Logs are ``/var/log/kav/5.5`` on both.
The guide's program paths ``/opt/kav/5.5/kav4mailservers/bin`` are links on every OS.

Which layout applies: the running system's (``HOST``, from ``sys.platform``) for the daemons'
defaults; the target tree's for kavsetup (``--root`` may name a FreeBSD image on a Linux host:
kavsetup.detect.osinfo.layout_of tells from the tree).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

VERSION_DIR = "5.5"
PRODUCT_DIR = "kav4mailservers"
#: The guide's program directory (4.2, 4.4, 5.1.2), kept as links to the OS's sbin on every OS.
GUIDE_PREFIX = "/opt/kav/5.5/kav4mailservers"
GUIDE_BIN = f"{GUIDE_PREFIX}/bin"
#: The guide's state directory (4.2 BasesPath, 6.1.1 QuarantinePath): what the schema's defaults name.
GUIDE_DB = "/var/db/kav/5.5/kav4mailservers"


@dataclass(frozen=True)
class OSLayout:
    """The absolute directories of one OS family."""

    name: str  # "linux" | "freebsd"
    prefix: str  # where packaged programs go: /usr, or /usr/local for a FreeBSD port
    etc_root: str  # /etc/kav | /usr/local/etc/kav
    state_root: str  # /var/lib/kav | /var/db/kav: bases, quarantine, kavsetup's journal
    log_root: str = "/var/log/kav"

    @property
    def etc(self) -> str:
        """The configuration directory (kav4mailservers.conf, publishers/, console.passwd)."""
        return f"{self.etc_root}/{VERSION_DIR}/{PRODUCT_DIR}"

    @property
    def conf_file(self) -> str:
        return f"{self.etc}/kav4mailservers.conf"

    @property
    def answers(self) -> str:
        """The answers file the packages' install scripts hand to kavsetup when it exists (guide 3.4)."""
        return f"{self.etc_root}/{VERSION_DIR}/setup.yaml"

    @property
    def state(self) -> str:
        """The state tree the package owns; kavsetup's journal is its journal/ directory."""
        return f"{self.state_root}/{VERSION_DIR}/{PRODUCT_DIR}"

    @property
    def journal(self) -> str:
        return f"{self.state}/journal"

    @property
    def db(self) -> str:
        """The state tree as the configuration's defaults name it: the guide's path, a link on Linux."""
        return GUIDE_DB

    @property
    def db_link(self) -> tuple[str, str] | None:
        """(link, relative target) making the guide's /var/db/kav reach the state tree, when they differ."""
        link = GUIDE_DB.split(f"/{VERSION_DIR}/")[0]
        if link == self.state_root:
            return None
        common = "/var/"
        assert link.startswith(common) and self.state_root.startswith(common), (link, self.state_root)
        return link, "../" + self.state_root[len(common):]

    @property
    def log(self) -> str:
        return f"{self.log_root}/{VERSION_DIR}/{PRODUCT_DIR}"

    @property
    def sbin(self) -> str:
        return f"{self.prefix}/sbin"


LINUX = OSLayout("linux", prefix="/usr", etc_root="/etc/kav", state_root="/var/lib/kav")
FREEBSD = OSLayout("freebsd", prefix="/usr/local", etc_root="/usr/local/etc/kav", state_root="/var/db/kav")
LAYOUTS: dict[str, OSLayout] = {layout.name: layout for layout in (LINUX, FREEBSD)}

#: The running system's layout: what the daemons' built-in defaults name.
HOST: OSLayout = FREEBSD if sys.platform.startswith("freebsd") else LINUX


def localize(path: str, to: OSLayout, frm: OSLayout = HOST) -> str:
    """``path`` of layout ``frm`` as layout ``to`` names it (a default such as
    ``/etc/kav/5.5/kav4mailservers/publishers`` rendered for a FreeBSD tree); other paths unchanged.
    Only the configuration directory moves: the defaults name state by the guide's /var/db path,
    which is right on every OS."""
    a, b = frm.etc_root, to.etc_root
    if path == a or path.startswith(a + "/"):
        return b + path[len(a):]
    return path
