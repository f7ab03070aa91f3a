#!/bin/bash
# Past one process: the daemon with --workers 1 (the default) against --workers 2, and the AMQP
# handler (publishing to a RabbitMQ broker of its own, 250 after each publisher confirm) against
# the benchmark sink, interleaved (rep 1 of each, then rep 2, ...), all with the default build
# (compiled core) and the default transaction log.
#
# usage: bench/run-scaleout.sh [REPS]      (default 2; about 15 minutes on 2 cores)
# env:   PEERS (default bench/.peers), QUICK=1 (a tenth of the messages)
# Note: the load client runs on the same two cores, so two workers compete with it; the
# broker, too, runs beside the server (its CPU is not counted as the server's).
set -e
cd "$(dirname "$0")"
reps=${1:-2}
export PEERS=${PEERS:-.peers}
[ -n "$QUICK" ] && export SMTPBENCH_ARGS="--quick"
./setup-peers.sh "$PEERS"
./install-variant.sh smtpsession-mypyc ..
stamp=$(date -u +%Y-%m-%d-%H%M)
export RESULTS=results/$stamp-scaleout
mkdir -p "$RESULTS"
for r in $(seq "$reps"); do
  for peer in smtpsession-mypyc smtpsession-mypyc-w2; do
    echo "rep $r: $peer" >&2
    FIRST_REP=$r IDLE=0 ONLY=w1,w50,mix,churn,w100k ./run-peer.sh "$peer" smtp 1 >/dev/null
    FIRST_REP=$r IDLE=0 ONLY=tls50,tlschurn ./run-peer.sh "$peer" smtp 1 >/dev/null
  done
  echo "rep $r: smtpsession-mypyc-amqp" >&2
  FIRST_REP=$r IDLE=0 ONLY=w1,w50 ./run-peer.sh smtpsession-mypyc-amqp smtp 1 >/dev/null
done
peers_abs=$(cd "$PEERS" && pwd)
sed -i "s#$peers_abs/#.peers/#g" "$RESULTS"/*.jsonl
{
  echo "# Scale-out run $stamp"
  echo
  echo "Command: \`bench/run-scaleout.sh $reps\`${QUICK:+ (QUICK)}; machine: $(nproc) cores,"
  echo "$(uname -sr), $(python3 --version 2>&1)."
  echo
  ./report.py --names smtpsession-mypyc,smtpsession-mypyc-w2,smtpsession-mypyc-amqp \
    --subject smtpsession-mypyc "$RESULTS"/*.jsonl
} > "$RESULTS/report.md"
cat "$RESULTS/report.md"
