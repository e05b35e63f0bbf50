#!/bin/sh
# kavexim.sh — start/stop Exim as two instances around smtpscanner (guide 4.4.4).
# Installed by kavsetup install; removed by kavsetup uninstall.
#   listen  : ${exim} -bd -q10m -C ${listen_conf}   receives mail, spools it in ${listen_spool}
#             and hands every message to smtpscanner (kav_lmtp_transport);
#   deliver : ${exim} -bd -q10m -oX "${reinject_if}"  the original configuration, listening only on
#             ${reinject_host}:${reinject_port} for scanned mail (ForwardMailer), delivering it.
set -e
EXIM=${exim}

start() {
    $$EXIM -bd -q10m -C ${listen_conf} -oP ${listen_pid}
    $$EXIM -bd -q10m -oX "${reinject_if}" -oP ${deliver_pid}
}

stop() {
    for pidfile in ${listen_pid} ${deliver_pid}; do
        if [ -f "$$pidfile" ]; then kill "$$(head -n 1 "$$pidfile")" 2>/dev/null || true; fi
    done
}

case "$${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; sleep 1; start ;;
    *) echo "usage: $$0 start|stop|restart" >&2; exit 2 ;;
esac
