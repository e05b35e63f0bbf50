"""Which operating system the tree holds (guide 1.2's list and today's distributions).

Linux: the ``distro`` library pointed at the tree (``root_dir``; os-release first, then the
``*-release`` files), with the legacy identity files it does not read handled here:
``/etc/debian_version`` (Debian 3.0 has no os-release) and the "Red Hat Linux" vs "Red Hat
Enterprise Linux" distinction (distro calls both ``rhel``).  FreeBSD: ``/bin/freebsd-version``
(10.0+), ``/etc/os-release`` (13.0+, a link into /var/run that is dangling in an offline image,
hence also ``/usr/lib/os-release`` is not relied on), else the ``FreeBSD X.Y-RELEASE`` banner of
``/etc/motd`` or ``/var/run/dmesg.boot`` (5.x era).  Unknown: said so, detection continues.
"""

from __future__ import annotations

import platform
import re

import distro

from kavsetup.detect.model import InitSystem, OSFamily, OSInfo, PackageFormat
from kavsetup.detect.rootfs import RootFS
from runtime.layout import FREEBSD, LINUX, OSLayout

_FAMILY_IDS: dict[OSFamily, frozenset[str]] = {
    OSFamily.DEBIAN: frozenset({"debian", "ubuntu", "devuan", "raspbian", "linuxmint", "kali"}),
    OSFamily.RHEL: frozenset({"rhel", "redhat", "fedora", "centos", "rocky", "almalinux", "ol",
                              "scientific", "amzn", "cloudlinux"}),
    OSFamily.SUSE: frozenset({"suse", "sles", "sled", "opensuse", "opensuse-leap",
                              "opensuse-tumbleweed", "sles_sap"}),
    OSFamily.MANDRAKE: frozenset({"mandrake", "mandriva", "mageia", "openmandriva"}),
    OSFamily.FREEBSD: frozenset({"freebsd"}),
}

_FREEBSD_BANNER = re.compile(r"FreeBSD (\d+\.\d+(?:-[A-Z0-9.-]+)?)")


def family_of(os_id: str, like: tuple[str, ...]) -> OSFamily:
    for candidate in (os_id, *like):
        for family, ids in _FAMILY_IDS.items():
            if candidate.lower() in ids:
                return family
    return OSFamily.OTHER


def _os_release(fs: RootFS) -> dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = fs.read_text(path) if not fs.is_symlink(path) or fs.exists(path) else None
        if text is None:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                fields[key.strip()] = value.strip().strip('"').strip("'")
        if fields:
            fields["_source"] = path
            return fields
    return {}


def _freebsd(fs: RootFS) -> OSInfo | None:
    version, source = "", ""
    text = fs.read_text("/bin/freebsd-version") if fs.is_file("/bin/freebsd-version") else None
    if text:
        match = re.search(r'^USERLAND_VERSION="([^"]+)"', text, re.M)
        if match:
            version, source = match.group(1), "/bin/freebsd-version"
    osr = _os_release(fs)
    if osr.get("ID") == "freebsd" and not version:
        version, source = osr.get("VERSION", osr.get("VERSION_ID", "")), osr["_source"]
    is_freebsd = bool(version) or osr.get("ID") == "freebsd" or fs.is_file("/etc/defaults/rc.conf")
    if not is_freebsd:
        return None
    if not version:
        for path in ("/etc/motd", "/var/run/dmesg.boot"):
            banner = fs.read_text(path) if fs.is_file(path) else None
            match = _FREEBSD_BANNER.search(banner or "")
            if match:
                version, source = match.group(1), path
                break
    if not version and str(fs.root) == "/" and platform.system() == "FreeBSD":
        version, source = platform.release(), "uname"
    source = source or "/etc/defaults/rc.conf"
    return OSInfo(id="freebsd", version=version, family=OSFamily.FREEBSD, init=InitSystem.BSD_RC,
                  pkg_format=PackageFormat.PKG, pretty=f"FreeBSD {version}".strip(), source=source)


def _init_system(fs: RootFS, family: OSFamily) -> InitSystem:
    if family is OSFamily.FREEBSD:
        return InitSystem.BSD_RC
    if str(fs.root) == "/" and fs.is_dir("/run/systemd/system"):
        return InitSystem.SYSTEMD  # the running init, as sd_booted(3) tells it
    init = fs.resolve("/sbin/init")
    if "systemd" in str(init.target):
        return InitSystem.SYSTEMD
    if any(fs.is_file(p) for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd")):
        return InitSystem.SYSTEMD
    # /etc/init.d alone proves nothing: Debian packages ship init scripts for every init.
    if fs.is_file("/etc/inittab") or fs.lexists("/sbin/init"):
        return InitSystem.SYSVINIT
    return InitSystem.UNKNOWN  # e.g. a minimal chroot with no init installed at all


def _pkg_format(fs: RootFS, family: OSFamily) -> PackageFormat:
    if fs.is_file("/var/lib/dpkg/status") or family is OSFamily.DEBIAN:
        return PackageFormat.DEB
    if fs.is_dir("/var/lib/rpm") or fs.is_dir("/usr/lib/sysimage/rpm") or family in (
            OSFamily.RHEL, OSFamily.SUSE, OSFamily.MANDRAKE):
        return PackageFormat.RPM
    if family is OSFamily.FREEBSD:
        return PackageFormat.PKG
    return PackageFormat.UNKNOWN


def layout_of(fs: RootFS) -> OSLayout:
    """The directory layout of the tree's OS (runtime/layout.py): where kavsetup finds and writes
    kav4mailservers.conf and its journal. Only FreeBSD differs from the Linux (FHS) layout."""
    return FREEBSD if _freebsd(fs) is not None else LINUX


def detect_os(fs: RootFS) -> OSInfo:
    bsd = _freebsd(fs)
    if bsd is not None:
        return bsd
    info = distro.LinuxDistribution(root_dir=str(fs.root), include_lsb=False, include_uname=False,
                                    include_oslevel=False)
    os_id, version, pretty = info.id(), info.version(), info.name(pretty=True)
    like = tuple(info.like().split())
    codename = info.codename()
    if codename in ("i386", "i586", "i686", "x86_64", "ppc", "s390", "ia64"):
        codename = ""  # SuSE-release puts the architecture where other files put a codename
    osr = _os_release(fs)
    if osr.get("ID"):
        os_id = osr["ID"].lower()  # keep os-release's own ID ("opensuse-leap"), distro shortens it
    source = osr.get("_source", "")
    release_info = info.distro_release_info()
    if not osr and release_info:
        source = next((f"/etc/{n}" for n in fs.listdir("/etc") if n.endswith("-release")
                       and n.lower().startswith(str(release_info.get("id", "")).lower())), "")
        if release_info.get("name", "").startswith("Red Hat Linux"):
            os_id = "redhat"   # Red Hat Linux 7-9 (guide 1.2), not Red Hat Enterprise Linux
    if not os_id and fs.is_file("/etc/debian_version"):
        # Debian before os-release (3.0 "woody", guide 1.2): only /etc/debian_version.
        version = (fs.read_text("/etc/debian_version") or "").strip()
        os_id, pretty, source = "debian", f"Debian GNU/Linux {version}".strip(), "/etc/debian_version"
    if not os_id:
        fs.problem("/etc/os-release", "operating system not recognised (no os-release or known "
                   "*-release file); continuing with generic Linux paths")
        init = _init_system(fs, OSFamily.UNKNOWN)
        return OSInfo("unknown", "", OSFamily.UNKNOWN, init, _pkg_format(fs, OSFamily.UNKNOWN),
                      "unknown operating system")
    family = family_of(os_id, like)
    return OSInfo(id=os_id, version=version, family=family, init=_init_system(fs, family),
                  pkg_format=_pkg_format(fs, family), pretty=pretty or os_id, codename=codename,
                  like=like, source=source)
