#!/usr/bin/env bash
# `make deb`: build dist/kav4mailservers_<version>_all.deb from the working tree with the standard
# tools (dpkg-buildpackage + debhelper), then run lintian on it (errors fail the build; warnings are
# printed). Whatever the tree contains is packaged: commands whose modules are not there yet are
# simply not shipped (see pkg/common/stage.py), so the package builds at every stage of the project.
#   KAV_DEB_LINTIAN=0  skip lintian
#   KAV_DEB_DIST=DIR   write the .deb there instead of dist/ (the tests build into a temp dir)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
dist="${KAV_DEB_DIST:-$top/dist}"

for tool in dpkg-buildpackage dh; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (apt-get install dpkg-dev debhelper)" >&2; exit 1; }
done

version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$top/pyproject.toml")
deb_version=$(dpkg-parsechangelog -l "$here/debian/changelog" -S Version)
if [ "$version" != "$deb_version" ]; then
    echo "build.sh: pyproject.toml says $version but pkg/deb/debian/changelog says $deb_version; add a changelog entry (dch -v $version)" >&2
    exit 1
fi

work=$(mktemp -d /tmp/kav4ms-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src="$work/kav4mailservers-$version"
mkdir -p "$src"
# Only what the package installs; never caches, eggs or the developer's venv.
tar -C "$top" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    -cf - pyproject.toml kavsetup runtime docs/man pkg/common | tar -C "$src" -xf -
cp -r "$here/debian" "$src/debian"
# One stager for all three package formats (pkg/common/stage.py), run by debian/rules.
cp "$top/pkg/common/stage.py" "$src/debian/stage.py"
# The LSB init scripts (pkg/sysvinit, shared with other packagings) for debian/rules' dh_installinit.
cp -r "$top/pkg/sysvinit" "$src/debian/sysvinit"

(cd "$src" && PYTHONDONTWRITEBYTECODE=1 dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1) || {
    tail -40 "$work/build.log" >&2
    echo "build.sh: dpkg-buildpackage failed" >&2
    exit 1
}
grep -E '^staged ' "$work/build.log" || true

mkdir -p "$dist"
rm -f "$dist"/kav4mailservers_*_all.deb
mv "$work"/kav4mailservers_"$version"_all.deb "$dist/"
deb="$dist/kav4mailservers_${version}_all.deb"
echo "built $deb"

if [ "${KAV_DEB_LINTIAN:-1}" != 0 ]; then
    if command -v lintian >/dev/null; then
        lintian --fail-on error --info "$deb" || { echo "build.sh: lintian reported errors" >&2; exit 1; }
        echo "lintian: no errors"
    else
        echo "build.sh: lintian not installed; skipped" >&2
    fi
fi
