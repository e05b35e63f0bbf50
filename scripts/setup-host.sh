#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the demo, the tests and the benchmarks talk to for real:
# Postfix's smtp-source/smtp-sink and postconf, swaks, ClamAV's peers, packaging tools and
# mmdebstrap for the distro matrix, headless Chromium and its driver for the console's browser tests.
# Idempotent and quiet when everything is present.
#
# An MTA is only installed when none is: on a machine that already runs Exim or Sendmail we
# never replace it (tests that need Postfix's tools then skip and say why).
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

pkgs=(python3 python3-venv python3-dev swaks mmdebstrap debootstrap iproute2 procps
      clamav clamav-daemon clamdscan clamsmtp tinyproxy dnsmasq-base dpkg-dev debhelper fakeroot lintian m4 sendmail-cf
      rpm rpmlint
      chromium chromium-driver sqlite3 fetchmail dovecot-pop3d)

has_mta() { dpkg-query -W -f='${Status}\n' postfix exim4-base sendmail-bin 2>/dev/null | grep -q "install ok installed"; }
has_mta || pkgs+=(postfix)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup-host: installing ${missing[*]}" >&2
# No package's postinst may start a daemon on this machine's network (docs/packaging.md: the roots do the same).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 0755 "$policy"
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && $SUDO rm -f "$policy"' EXIT
stamp=/var/lib/apt/periodic/kav4ms-update-stamp
if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +720 2>/dev/null)" ]; then
  $SUDO apt-get update -q >&2
  $SUDO mkdir -p "$(dirname "$stamp")" && $SUDO touch "$stamp"
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
