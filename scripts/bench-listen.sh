#!/usr/bin/env bash
# `chokepoint listen` under a long stream of spans: posts SPANS spans (default 10 million) of the
# benchmark's generated service to the receiver over OTLP/HTTP, as fast as it takes them, and
# prints the receiver's resident memory after every million spans — it must stay flat once the
# receiver's bounded buffers have filled — then the analysis's span count.
# Usage: scripts/bench-listen.sh [SPANS]
set -euo pipefail
cd "$(dirname "$0")/.."
spans=${1:-10000000}
cargo build --release --quiet -p chokepoint -p chokepoint-bench
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$(mktemp)
target/release/chokepoint listen --http "127.0.0.1:$port" --grpc off --format json --quiet >"$out" 2>/dev/null &
listener=$!
trap 'kill $listener 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
rss_mb() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$listener/status"; }
echo "| spans sent | seconds | receiver RSS |"
echo "|--:|--:|--:|"
target/release/chokepoint-bench send "127.0.0.1:$port" "$spans" | while read -r word sent _ _ seconds _; do
  [ "$word" = sent ] || continue
  echo "| $sent | $seconds | $(rss_mb) MB |"
done
kill -INT $listener
wait $listener || true
analysed=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["traces"]["summary"]["spans"])' "$out")
echo
echo "The analysis counted $analysed spans of $spans sent."
