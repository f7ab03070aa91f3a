#!/bin/bash
# The conformance table of docs/conformance.rst ("Checking any server"), reproduced: each peer
# of the benchmark started on a free loopback port with STARTTLS (a throwaway self-signed
# certificate), python -m smtpsession.conformance --json run against it, the peer stopped by
# its PID. One JSON report per peer in OUT (default results/conformance-DATE/), and a summary line
# per peer on stdout: failing cases by id.
#
# usage: tools/conformance_peers.sh [PEER...]   (default: all of them)
#   PEER: smtpsession | smtpsession-lmtp | twisted.mail | aiosmtpd | aiosmtpd-lmtp |
#         node-smtp-server | node-smtp-server-lmtp | go-smtp | smtp-sink | haraka
# env:  PEERS (where setup-peers.sh installed the peers, default .peers), PYTHON (runs the
#       checker from this checkout, default ../.venv-test/bin/python or python3; the smtpsession
#       peer runs with the twistd beside it, this checkout first on the path), OUT (folder for
#       the reports)
set -u
cd "$(dirname "$0")/.."
repo=$(cd .. && pwd)
peers=${PEERS:-.peers}
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x ../.venv-test/bin/python ]; then python=../.venv-test/bin/python; else python=python3; fi
fi
twistd=$(dirname "$python")/twistd
[ -x "$twistd" ] || twistd=twistd
out=${OUT:-results/conformance-$(date +%F)}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
export SMTPBENCH_TLS_CERT=$tmp/cert.pem SMTPBENCH_TLS_KEY=$tmp/key.pem

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

command_for() {  # command_for PEER PORT: the server's command line, one word a line
  local port=$2
  case $1 in
    smtpsession) printf '%s\n' env "PYTHONPATH=$repo:$repo/bench" "$twistd" -n --pidfile= \
        --logfile=/dev/null smtpsession --port "tcp:$port:interface=127.0.0.1" --no-reverse-lookup \
        --handler bench_sink.Sink --tls-cert "$SMTPBENCH_TLS_CERT" --tls-key "$SMTPBENCH_TLS_KEY" ;;
    smtpsession-lmtp) command_for smtpsession "$port"; echo --lmtp ;;
    twisted.mail) printf '%s\n' "$peers/tw/bin/python" peers/twisted_sink.py "$port" ;;
    aiosmtpd) printf '%s\n' "$peers/aio/bin/python" peers/aiosmtpd_sink.py "$port" smtp ;;
    aiosmtpd-lmtp) printf '%s\n' "$peers/aio/bin/python" peers/aiosmtpd_sink.py "$port" lmtp ;;
    node-smtp-server) printf '%s\n' env "NODE_PATH=$peers/node/node_modules" node peers/node_sink.cjs "$port" smtp ;;
    node-smtp-server-lmtp) printf '%s\n' env "NODE_PATH=$peers/node/node_modules" node peers/node_sink.cjs "$port" lmtp ;;
    go-smtp) printf '%s\n' "$peers/go/gosmtp_sink" "$port" ;;
    smtp-sink) printf '%s\n' smtp-sink -u nobody 127.0.0.1:"$port" 100 ;;  # Postfix's test sink
    haraka) printf '%s\n' env "PEERS=$peers" peers/haraka_sink.sh "$port" ;;
    *) return 1 ;;
  esac
}

check() {  # check PEER
  local peer=$1 port pid cmd lmtp=()
  port=$(free_port)
  mapfile -t cmd < <(command_for "$peer" "$port") || { echo "$peer: unknown peer" >&2; return; }
  case $peer in *-lmtp) lmtp=(--lmtp) ;; esac
  "${cmd[@]}" >"$tmp/$peer.log" 2>&1 &
  pid=$!
  for _ in $(seq 150); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  PYTHONPATH=$repo "$python" -m smtpsession.conformance --json "${lmtp[@]}" "127.0.0.1:$port" \
    >"$out/$peer.json" 2>"$tmp/$peer.err"
  local status=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if [ "$status" = 2 ]; then
    echo "$peer: not checked: $(cat "$tmp/$peer.err")"
    return
  fi
  "$python" - "$out/$peer.json" "$peer" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
cases = report["cases"]
count = {r: sum(c["result"] == r for c in cases) for r in ("pass", "fail", "skip")}
failing = " ".join(f"{c['group']}/{c['id']}" for c in cases if c["result"] == "fail")
print(f"{sys.argv[2]}: {count['pass']} pass, {count['fail']} fail, {count['skip']} skip"
      + (f"; failing: {failing}" if failing else ""))
PY
}

if [ $# = 0 ]; then
  set -- smtpsession smtpsession-lmtp twisted.mail aiosmtpd aiosmtpd-lmtp node-smtp-server \
    node-smtp-server-lmtp go-smtp smtp-sink haraka
fi
for peer in "$@"; do check "$peer"; done
