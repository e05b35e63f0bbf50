"""What every per-MTA detector needs: the tree, its OS, its package database, and whether it
may run the MTA's own tools."""

from __future__ import annotations

from dataclasses import dataclass

from kavsetup.detect.model import OSFamily, OSInfo, Version
from kavsetup.detect.packages import PackageDB
from kavsetup.detect.rootfs import RootFS


@dataclass
class Context:
    fs: RootFS
    os: OSInfo
    pkgs: PackageDB
    run_binaries: bool

    @property
    def freebsd(self) -> bool:
        return self.os.family is OSFamily.FREEBSD

    def package_version(self, *names: str) -> tuple[Version | None, str, str | None]:
        """(version, source, package name) from the package database, if it lists one of names."""
        pkg = self.pkgs.get(*names)
        if pkg is None:
            return None, "", None
        return Version.parse(pkg.upstream), self.pkgs.format.value, pkg.name

    def first_existing(self, *paths: str) -> str | None:
        return next((p for p in paths if self.fs.lexists(p)), None)
