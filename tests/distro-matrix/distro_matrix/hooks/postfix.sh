#!/bin/sh
# Local-only Postfix as Debian's debconf leaves it, plus the aliases database. IPv4 only: the
# namespace has nothing but lo, and a missing ::1 makes Postfix log warnings on every start.
set -eu
postconf -e inet_protocols=ipv4
newaliases
