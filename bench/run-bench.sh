#!/bin/bash
# The benchmark in one command: install the peers, then run smtpsession (this checkout) and
# every peer interleaved (rep 1 of everyone, then rep 2, ...), SMTP workloads, the idle test,
# the STARTTLS workloads and a short LMTP run; then write the tables and the chart.
#
# usage: bench/run-bench.sh [REPS]        (default 3; about 35 minutes on 2 cores)
# env:   IDLE (idle connections, default 10000), PEER_LIST (default: all), QUICK=1 (a tenth
#        of the messages: a smoke test), PEERS (where peers are installed, default bench/.peers),
#        BEFORE=<commit> (also measure that commit's two builds, for a before/after comparison)
set -e
cd "$(dirname "$0")"
reps=${1:-3}
export PEERS=${PEERS:-.peers}
export IDLE=${IDLE:-10000}
[ -n "$QUICK" ] && export SMTPBENCH_ARGS="--quick"
./setup-peers.sh "$PEERS"
# smtpsession from this checkout, in a venv of its own, reinstalled on every run: the pure
# Python build (SMTPSESSION_MYPYC=0, what installs without a C compiler), and the build with
# the core compiled by mypyc (SMTPSESSION_MYPYC=1, the default where there is a compiler).
install_variant() { ./install-variant.sh "$@"; }  # VARIANT SOURCE_DIR
for variant in smtpsession smtpsession-mypyc; do install_variant "$variant" ..; done
# BEFORE=<commit>: the same two builds of an earlier commit, measured in the same run (a
# before/after comparison of a change), with --no-transaction-log (older versions' log line was
# a log event per transaction).
before_peers=""
if [ -n "$BEFORE" ]; then
  before_src=$(mktemp -d)
  git -C .. archive "$BEFORE" | tar -x -C "$before_src"
  for variant in smtpsession-before smtpsession-before-mypyc; do install_variant "$variant" "$before_src"; done
  rm -rf "$before_src"
  before_peers="smtpsession-before-nolog smtpsession-before-mypyc-nolog "
fi
stamp=$(date -u +%Y-%m-%d-%H%M)
export RESULTS=results/$stamp
mkdir -p "$RESULTS"
# smtpsession and smtpsession-mypyc run as users run the daemon (its transaction log on); the
# -nolog variants with --no-transaction-log, as the peers, which log nothing.
peers=${PEER_LIST:-${before_peers}smtpsession smtpsession-mypyc smtpsession-nolog smtpsession-mypyc-nolog smtp-sink go-smtp node-smtp-server twisted.mail aiosmtpd}
for r in $(seq "$reps"); do
  for peer in $peers; do
    echo "rep $r: $peer (smtp)" >&2
    FIRST_REP=$r ./run-peer.sh "$peer" smtp 1 >/dev/null
  done
  for peer in $peers; do
    [ "$peer" = smtp-sink ] && continue          # smtp-sink has no TLS
    echo "rep $r: $peer (tls)" >&2
    FIRST_REP=$r IDLE=0 ONLY=tls50,tlschurn,tls10m ./run-peer.sh "$peer" smtp 1 >/dev/null
  done
  for peer in $peers; do
    case $peer in go-smtp|twisted.mail) continue ;; esac   # no LMTP over TCP
    echo "rep $r: $peer (lmtp)" >&2
    FIRST_REP=$r IDLE=0 ONLY=w1,w50,mix ./run-peer.sh "$peer" lmtp 1 >/dev/null
  done
done
# The raw lines record the commands run: keep this machine's paths out of them.
peers_abs=$(cd "$PEERS" && pwd)
sed -i "s#$peers_abs/#.peers/#g" "$RESULTS"/*.jsonl
{
  echo "# Benchmark run $stamp"
  echo
  echo "Command: \`bench/run-bench.sh $reps\` (IDLE=$IDLE${QUICK:+, QUICK}${BEFORE:+, BEFORE=$BEFORE}); machine: $(nproc) cores,"
  echo "$(uname -sr), $(python3 --version 2>&1), node $(node --version 2>/dev/null)."
  echo
  echo "## SMTP"
  echo
  ./report.py "$RESULTS"/*.jsonl
  echo
  echo "## LMTP"
  echo
  ./report.py --proto lmtp "$RESULTS"/*.jsonl
  echo
  echo "## smtpbench's own summary"
  echo
  ./summarize --names "${peers// /,}" "$RESULTS"/*.jsonl
} > "$RESULTS/report.md"
./chart.py "$RESULTS"/*.jsonl -o "$RESULTS/benchmarks.svg"
./chart.py --subject smtpsession-mypyc "$RESULTS"/*.jsonl -o "$RESULTS/benchmarks-mypyc.svg"
cat "$RESULTS/report.md"
echo "raw results, report and chart in bench/$RESULTS" >&2
