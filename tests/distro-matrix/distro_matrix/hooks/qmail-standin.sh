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
# qmail-queue is a compiled program installed set-uid qmailq, and Linux ignores set-uid on scripts:
# the stand-in's Python logic goes to /usr/local/lib, and a compiled set-uid front runs it
# (qmail-queue-setuid.c), so whoever calls qmail-queue (smtpscanner as kluser, after the swap) queues
# mail as qmailq like with the real program, without being able to write the queue itself.
install -d -m 0755 /usr/local/lib/qmail-standin
install -m 0755 "$hooks/qmail-queue" /usr/local/lib/qmail-standin/qmail-queue
cc -O2 -Wall -Werror -DQMAILHOME='"/var/qmail"' -DSTANDIN='"/usr/local/lib/qmail-standin/qmail-queue"' \
    -o /tmp/qmail-queue-setuid "$hooks/qmail-queue-setuid.c"
install -o qmailq -g qmail -m 4711 /tmp/qmail-queue-setuid /var/qmail/bin/qmail-queue
rm -f /tmp/qmail-queue-setuid
echo mta.test > /var/qmail/control/me
printf 'mta.test\nlocalhost\n' > /var/qmail/control/locals
printf 'mta.test\nlocalhost\n' > /var/qmail/control/rcpthosts
echo "$1" > /var/qmail/alias/.qmail-postmaster
echo "$1" > /var/qmail/alias/.qmail-root
