#!/bin/sh
# kav4mailservers qmail-queue wrapper (guide 4.4.2), installed by kavsetup install.
# qmail-smtpd and qmail-inject call /var/qmail/bin/qmail-queue with the message on fd 0 and
# the envelope on fd 1 (qmail-queue(8)); smtpscanner scans the message and then hands it,
# unchanged or processed, to the original program renamed to ${aside}
# (kav4mailservers.conf: ForwardMailer=qmail:(${aside})).
# `kavsetup uninstall` puts the original back.
exec ${prefix}/bin/smtpscanner qmail-queue
