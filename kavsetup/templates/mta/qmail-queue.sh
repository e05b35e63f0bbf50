#!/bin/sh
# kav4mailservers qmail-queue wrapper (guide 4.4.2), installed by kavsetup install.
# qmail-smtpd and qmail-inject call /var/qmail/bin/qmail-queue with the message on fd 0 and
# the envelope on fd 1 (qmail-queue(8)), as themselves. No set-uid anywhere (Linux ignores it on
# scripts): kavqmailqueue hands message and envelope to the running smtpscanner over its socket
# (kav4mailservers.conf: ListenAddress=unix:${socket}) and exits with qmail-queue's codes;
# smtpscanner, as the filter's account, scans and passes the mail, unchanged or processed, to the
# original program renamed to ${aside} (ForwardMailer=qmail:(${aside})).
# `kavsetup uninstall` puts the original back.
exec ${prefix}/bin/kavqmailqueue --socket ${socket}
