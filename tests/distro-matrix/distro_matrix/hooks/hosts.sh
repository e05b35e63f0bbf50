#!/bin/sh
# A fully qualified host name that resolves from /etc/hosts (Sendmail and Exim ask for one; there is
# no DNS in the test namespaces), and the mail name Debian's MTAs read.
set -eu
host="$1"
echo "${host%%.*}" > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s %s\n' "$host" "${host%%.*}" > /etc/hosts
echo "$host" > /etc/mailname
