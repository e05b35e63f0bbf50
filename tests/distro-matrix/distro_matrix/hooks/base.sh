#!/bin/sh
# Two local users: one receives the test mail, one reads the postmaster's (and root's) mail.
set -eu
for u in "$@"; do
    id -u "$u" >/dev/null 2>&1 || useradd -m -s /bin/sh "$u"
done
