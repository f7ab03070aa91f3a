#!/bin/bash
# A profile of the server under the w50 load (smtp-source, 50 sessions, 1 KB messages): perf
# samples of the server process only, summed by shared object (kernel, CPython, the compiled
# core, OpenSSL, ...) and by symbol.  It says what the CPU per message is spent on, which the
# benchmark's tables cannot.
#
# usage: tools/profile_w50.sh [MESSAGES]     (default 40000)
# env:   PEERS (default .peers), TWISTD (default: the compiled build's), NOLOG=1 (no transaction
#        log), TOP (symbols to list, default 25).  Needs perf (linux-perf) and the right to
#        profile the process (root, or kernel.perf_event_paranoid <= 1).
set -e
cd "$(dirname "$0")/.."
n=${1:-40000}
peers=${PEERS:-.peers}
port=${PORT:-2690}
out=$(mktemp -d)
TWISTD=${TWISTD:-$peers/smtpsession-mypyc/bin/twistd} ./smtpsession-server.sh "$port" \
  >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
sleep 0.5
# exec replaced the shell with twistd: $pid is the server.
perf record -F 1999 -p "$pid" -o "$out/perf.data" >/dev/null 2>&1 &
perf_pid=$!
sleep 0.5
timeout 300 smtp-source -s 50 -m "$n" -l 1024 -f a@example.com -t b@example.com \
  -M bench.example.com -d "127.0.0.1:$port"
kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "== by shared object"
perf report -i "$out/perf.data" --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
echo "== by symbol (top ${TOP:-25})"
perf report -i "$out/perf.data" --sort dso,sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' \
  | head -"${TOP:-25}"
rm -rf "$out"
