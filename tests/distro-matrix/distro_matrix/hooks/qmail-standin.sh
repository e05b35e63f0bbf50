#!/bin/sh
# A qmail tree around the qmail-queue STAND-IN (tests/integration/qmail_standin: Debian does not
# package qmail). Users, groups, modes and layout as qmail's INSTALL sets them; no qmail-send or
# qmail-smtpd exist, so the matrix injects mail through qmail-queue(8) and reads the queue.
set -eu
hooks="$(dirname "$0")"
getent group qmail >/dev/null || groupadd --system qmail
getent group nofiles >/dev/null || groupadd --system nofiles
id -u qmailq >/dev/null 2>&1 || useradd --system -g qmail -d /var/qmail -s /usr/sbin/nologin qmailq
id -u alias >/dev/null 2>&1 || useradd --system -g nofiles -d /var/qmail/alias -s /usr/sbin/nologin alias
install -d -m 0755 /var/qmail /var/qmail/bin /var/qmail/control
install -d -o alias -g qmail -m 2755 /var/qmail/alias
install -d -o qmailq -g qmail -m 0750 /var/qmail/queue /var/qmail/queue/mess /var/qmail/queue/intd /var/qmail/queue/todo
install -o qmailq -g qmail -m 4711 "$hooks/qmail-queue" /var/qmail/bin/qmail-queue
echo mta.test > /var/qmail/control/me
printf 'mta.test\nlocalhost\n' > /var/qmail/control/locals
printf 'mta.test\nlocalhost\n' > /var/qmail/control/rcpthosts
echo "$1" > /var/qmail/alias/.qmail-postmaster
echo "$1" > /var/qmail/alias/.qmail-root
