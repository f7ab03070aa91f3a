#!/bin/sh
# smtpsession as smtpbench runs it: the daemon with the benchmark handler (bench_sink.py:
# accept everything, read the whole body with `async for`, discard it), default protocol
# options, the default transaction log (one line per message, to the log file smtpbench
# keeps), no reverse DNS (as the peers), STARTTLS when smtpbench provides a certificate
# (SMTPBENCH_TLS_CERT/KEY). One option differs from the defaults: --size 32 MiB, because the
# w10m, mix and tls10m workloads send 10 MiB bodies plus headers, over the default 10 MiB limit
# (the peers have no limit by default; a user who takes 10 MiB messages raises it the same way).
# usage: smtpsession-server.sh PORT [smtp|lmtp]     env: TWISTD (default: twistd on PATH),
#        WORKERS (number of processes, when the daemon supports --workers), NOLOG=1 (run with
#        --no-transaction-log, as the peers, which log nothing), AMQP_URL (the AMQP handler,
#        publishing to that broker, instead of the benchmark sink)
set -e
here=$(cd "$(dirname "$0")" && pwd)
port=$1
proto=${2:-smtp}
set -- --port "tcp:$port:interface=127.0.0.1" --no-reverse-lookup --size 33554432
if [ -n "$AMQP_URL" ]; then
  set -- "$@" --handler amqp --handler-option "url=$AMQP_URL"
else
  set -- "$@" --handler bench_sink.Sink
fi
[ -n "$NOLOG" ] && set -- "$@" --no-transaction-log
[ "$proto" = lmtp ] && set -- "$@" --lmtp
[ -n "$SMTPBENCH_TLS_CERT" ] && set -- "$@" --tls-cert "$SMTPBENCH_TLS_CERT" --tls-key "$SMTPBENCH_TLS_KEY"
[ -n "$WORKERS" ] && set -- "$@" --workers "$WORKERS"
exec env PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "${TWISTD:-twistd}" -n --pidfile= \
    --logfile=- smtpsession "$@"
