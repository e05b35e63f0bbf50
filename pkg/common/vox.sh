#!/bin/sh
# vox.sh ARCHIVE - disinfect a zip, tar, tgz (tar.gz) or rar archive (guide 5.3.3.1).
#
# kavscanner finds viruses inside archives but does not rewrite them (guide 5.3.3.1).  Used as
# the container rule  [scanner.container] OnInfected=exec .../contrib/vox.sh %FULLPATH%/%FILENAME%
# this script unpacks the archive into a private directory, lets kavscanner cure what it can and
# remove what it cannot (-i3, without the configured actions), packs the rest again and puts it
# in place of the original with the original's mode and owner.  A nested archive that holds a
# virus is removed as a whole.  Exit: 0 repaired, 1 failed (archive left as it was), 9 usage.
#
# kavscanner reads the same configuration (KAV_CONFIG, or VOX_CONFIG to name another one) for its
# database.  rar needs Debian's non-free unrar and rar.  Archive members never touch the file
# system outside the private directory: unzip and GNU tar drop absolute and ".." names.
set -u
umask 077
[ $# -eq 1 ] || { echo "usage: vox.sh ARCHIVE" >&2; exit 9; }
archive=$1
case $archive in /*) ;; *) archive=$(pwd)/$archive ;; esac
dir=$(dirname -- "$archive")
if [ ! -f "$archive" ] || [ -L "$archive" ] || [ "$(cd -P -- "$dir" && pwd)" != "$dir" ]; then
    echo "vox.sh: $archive: not a regular file reached without symbolic links" >&2
    exit 1
fi
KAVSCANNER=${KAVSCANNER:-kavscanner}
work=$(mktemp -d "${TMPDIR:-/tmp}/vox.XXXXXXXX") || exit 1
trap 'rm -rf -- "$work"' EXIT HUP INT TERM
mkdir "$work/x"

fail() { echo "vox.sh: $archive: $*" >&2; exit 1; }

case $archive in
    *.zip|*.ZIP) kind=zip; unzip -qq -- "$archive" -d "$work/x" || fail "cannot unpack" ;;
    *.tar|*.TAR) kind=tar; tar -xf "$archive" -C "$work/x" --no-same-owner --no-same-permissions || fail "cannot unpack" ;;
    *.tgz|*.TGZ|*.tar.gz|*.TAR.GZ) kind=tgz
        tar -xzf "$archive" -C "$work/x" --no-same-owner --no-same-permissions || fail "cannot unpack" ;;
    *.rar|*.RAR) kind=rar; unrar x -inul -- "$archive" "$work/x/" || fail "cannot unpack (unrar installed?)" ;;
    *) fail "not a zip, tar, tgz or rar archive" ;;
esac

"$KAVSCANNER" ${VOX_CONFIG:+-c "$VOX_CONFIG"} -q -R -i3 --no-actions --no-ichecker "$work/x"
rc=$?
case $rc in 0|2|3|4|5|6) ;; *) fail "kavscanner could not clean the contents (exit $rc)" ;; esac

case $kind in
    zip) (cd "$work/x" && zip -q -r -y "$work/new" .) || fail "cannot pack"; mv "$work/new.zip" "$work/new" ;;
    tar) tar -cf "$work/new" -C "$work/x" . || fail "cannot pack" ;;
    tgz) tar -czf "$work/new" -C "$work/x" . || fail "cannot pack" ;;
    rar) (cd "$work/x" && rar a -inul -r "$work/new.rar" .) || fail "cannot pack (rar installed?)"
         mv "$work/new.rar" "$work/new" ;;
esac
# Same directory, then rename: a reader sees the old archive or the new one, never half of one.
tmp=$(mktemp -- "$dir/.vox.XXXXXXXX") || fail "cannot write in $dir"
cat -- "$work/new" > "$tmp" && chmod --reference="$archive" -- "$tmp" && \
    { [ "$(id -u)" != 0 ] || chown --reference="$archive" -- "$tmp"; } && mv -f -- "$tmp" "$archive" || {
    rm -f -- "$tmp"; fail "cannot replace the archive"; }
echo "vox.sh: $archive: disinfected"
