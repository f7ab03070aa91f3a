#!/bin/bash
# Where a small message's CPU goes: the server's user and system time per message under the
# w50 load (smtp-source, 50 sessions, 1 KB messages), for Twisted's floor (a protocol that
# parses nothing, tools/twisted_floor.py), the same floor slowed by 2 and 4 us of busy work
# per read (4 reads per message), the floor and the 4 us one again with replies sent together
# ("batched", as smtpsession does), the batched floor dispatching ready sockets without
# Twisted's logging context ("lean", as the smtpsession daemon does), smtpsession (both builds,
# with its default transaction log and without it), node's smtp-server and go-smtp: each alone
# on the machine, one after the other.
#
# It shows what the benchmark's tables cannot: how much of smtpsession's CPU is Twisted's own
# floor, and that a server's system time per message grows with its user time (each reply then
# more often wakes a client that went to sleep) unless the replies of a turn go out together.
#
# usage: tools/cpu_split.sh [MESSAGES]      (default 40000; about a minute)
# env:   PEERS (where setup-peers.sh and run-bench.sh installed the peers, default .peers)
#        REPS (rounds of all servers, default 1)
set -e
cd "$(dirname "$0")/.."
n=${1:-40000}
peers=${PEERS:-.peers}
port=${PORT:-2650}
floor=("$peers/tw/bin/python" tools/twisted_floor.py)

measure() {  # measure LABEL -- server command (with {port})
  local label=$1; shift 2
  local cmd=("${@//\{port\}/$port}")
  "${cmd[@]}" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  # utime and stime (clock ticks) from /proc/PID/stat, before and after the load.
  local before after t0 t1
  before=$(awk '{print $14, $15}' "/proc/$pid/stat")
  t0=$(date +%s.%N)
  timeout 300 smtp-source -s 50 -m "$n" -l 1024 -f a@example.com -t b@example.com \
    -M bench.example.com -d "127.0.0.1:$port"
  t1=$(date +%s.%N)
  after=$(awk '{print $14, $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$label" "$n" "$t0" "$t1" "$(getconf CLK_TCK)" $before $after <<'EOF'
import sys
label, n, t0, t1, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
u0, s0, u1, s1 = map(int, sys.argv[6:10])
user, system = (u1 - u0) / hz / n * 1e6, (s1 - s0) / hz / n * 1e6
print(f"{label:26} {n / (t1 - t0):8,.0f} msg/s   user {user:5.1f} us   system {system:5.1f} us"
      f"   total {user + system:5.1f} us per message")
EOF
  port=$((port + 1))
}

for _ in $(seq "${REPS:-1}"); do
  measure "twisted floor" -- "${floor[@]}" {port}
  measure "twisted floor + 4 x 2 us" -- "${floor[@]}" {port} 2
  measure "twisted floor + 4 x 4 us" -- "${floor[@]}" {port} 4
  measure "floor, batched" -- "${floor[@]}" {port} 0 batch
  measure "floor + 4 x 4 us, batched" -- "${floor[@]}" {port} 4 batch
  measure "floor, batched, lean" -- env PYTHONPATH=.. "${floor[@]}" {port} 0 batch lean
  measure "smtpsession" -- env TWISTD="$peers/smtpsession/bin/twistd" ./smtpsession-server.sh {port}
  measure "smtpsession (mypyc)" -- \
    env TWISTD="$peers/smtpsession-mypyc/bin/twistd" ./smtpsession-server.sh {port}
  measure "smtpsession, no log" -- \
    env NOLOG=1 TWISTD="$peers/smtpsession/bin/twistd" ./smtpsession-server.sh {port}
  measure "smtpsession (mypyc), no log" -- \
    env NOLOG=1 TWISTD="$peers/smtpsession-mypyc/bin/twistd" ./smtpsession-server.sh {port}
  measure "node smtp-server" -- \
    env NODE_PATH="$peers/node/node_modules" node peers/node_sink.cjs {port} smtp
  measure "go-smtp" -- "$peers/go/gosmtp_sink" {port}
done
