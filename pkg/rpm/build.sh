#!/usr/bin/env bash
# `make rpm`: build dist/kav4mailservers-<version>-<release>.noarch.rpm from the working tree with
# rpmbuild (Debian's `rpm` package), then run rpmlint on it (errors fail the build; the filters in
# kav4mailservers.rpmlintrc are each explained in the spec).
#   KAV_RPM_RELEASE=N  the Release (default 1); the matrix rebuilds with 2 to test `rpm -U`
#   KAV_RPM_LINT=0     skip rpmlint
#   KAV_RPM_DIST=DIR   write the .rpm there instead of dist/
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
dist="${KAV_RPM_DIST:-$top/dist}"
release="${KAV_RPM_RELEASE:-1}"
command -v rpmbuild >/dev/null || { echo "build.sh: rpmbuild not found (apt-get install rpm)" >&2; exit 1; }

version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$top/pyproject.toml")
work=$(mktemp -d /tmp/kav4ms-rpm.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
src="$work/kav4mailservers-$version"
mkdir -p "$src"
tar -C "$top" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    -cf - pyproject.toml kavsetup runtime docs/man pkg/common | tar -C "$src" -xf -
cp "$top/pkg/common/stage.py" "$src/stage.py"
cp -r "$top/pkg/deb/debian/units" "$src/units"
cp "$here/kav4mailservers.sysusers" "$here/kav4mailservers.tmpfiles" "$src/"
cp "$top/pkg/deb/debian/copyright" "$src/COPYING"
# The shipped %config(noreplace) file: the schema's commented defaults, as kavsetup writes them.
PYTHONPATH="$src" PYTHONDONTWRITEBYTECODE=1 python3 -c \
    'import sys; sys.argv = ["kavsetup", "config", "defaults"]; from kavsetup.cli import main; sys.exit(main())' \
    > "$src/kav4mailservers.conf"
tar -C "$work" --owner=0 --group=0 -czf "$work/SOURCES/kav4mailservers-$version.tar.gz" "kav4mailservers-$version"
cp "$here/kav4mailservers.spec" "$work/SPECS/"

# --nodeps: on Debian the rpm database is empty, so BuildRequires (python3) cannot be checked there.
PYTHONDONTWRITEBYTECODE=1 rpmbuild -bb --nodeps --define "_topdir $work" --define "kav_version $version" \
    --define "kav_release $release" --define "_binary_payload w9.gzdio" \
    "$work/SPECS/kav4mailservers.spec" >"$work/build.log" 2>&1 || {
    tail -40 "$work/build.log" >&2
    echo "build.sh: rpmbuild failed" >&2
    exit 1
}
mkdir -p "$dist"
rpm_file=$(find "$work/RPMS" -name 'kav4mailservers-*.noarch.rpm' | head -1)
rm -f "$dist/$(basename "$rpm_file")"
mv "$rpm_file" "$dist/"
out="$dist/$(basename "$rpm_file")"
echo "built $out"

if [ "${KAV_RPM_LINT:-1}" != 0 ]; then
    if command -v rpmlint >/dev/null; then
        rpmlint -c "$here/rpmlint.toml" -r "$here/kav4mailservers.rpmlintrc" "$out" || { echo "build.sh: rpmlint reported errors" >&2; exit 1; }
        echo "rpmlint: no errors"
    else
        echo "build.sh: rpmlint not installed; skipped" >&2
    fi
fi
