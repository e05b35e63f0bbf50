#!/bin/sh
# kavsendmail.sh — start/stop Sendmail as two instances around smtpscanner (guide 4.4.1, 2.1).
# Installed by kavsetup install; removed by kavsetup uninstall.
#   listen  : sendmail -bd -q10m -C ${listen_cf}   receives mail (port 25), queues it in
#             ${listen_queue} and hands every message to the smtpscanner mailer;
#   deliver : sendmail -bd -q10m -C ${sendmail_cf} on ${reinject_addr} only: takes back the
#             scanned mail from smtpscanner (ForwardMailer=smtp:${reinject_addr}) and delivers it;
#   msp     : sendmail -Ac -q10m (submit.cf queue runner, Sendmail 8.12+), when submit.cf exists.
set -e
SENDMAIL=/usr/sbin/sendmail
LISTEN_PID=${listen_pid}
DELIVER_PID=${deliver_pid}

start() {
    $$SENDMAIL -bd -q10m -C ${listen_cf}
    $$SENDMAIL -bd -q10m -C ${sendmail_cf} -O PidFile=$$DELIVER_PID \
        -O DaemonPortOptions=Name=kav-reinject,Family=inet,Addr=${reinject_host},Port=${reinject_port}
    if [ -f ${submit_cf} ]; then $$SENDMAIL -Ac -q10m; fi
}

stop() {
    for pidfile in $$LISTEN_PID $$DELIVER_PID; do
        if [ -f "$$pidfile" ]; then kill "$$(head -n 1 "$$pidfile")" 2>/dev/null || true; fi
    done
}

case "$${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; sleep 1; start ;;
    *) echo "usage: $$0 start|stop|restart" >&2; exit 2 ;;
esac
