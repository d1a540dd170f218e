#!/usr/bin/env bash
# `chokepoint listen` soaked and abused: spans of the benchmark's generator at RATE spans/s
# (default 50,000) for SECONDS (default 600), alternately over OTLP/HTTP and OTLP/gRPC
# (`chokepoint-bench soak`), while scripts/abuse_receiver.py attacks the HTTP port. Prints the
# receiver's resident memory every 10 s, the abuse and how it was answered, then checks that
# every span taken was analysed and that the analysis equals `chokepoint traces` on the same
# spans written to a file.
# Usage: scripts/soak-listen.sh [SECONDS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
rate=${2:-50000}
ulimit -n 16384
cargo build --release --quiet -p chokepoint -p chokepoint-bench
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http=$(free_port)
grpc=$(free_port)
work=$(mktemp -d)
target/release/chokepoint listen --http "127.0.0.1:$http" --grpc "127.0.0.1:$grpc" --format json --quiet \
  >"$work/listen.json" 2>"$work/listen.err" &
listener=$!
trap 'kill $listener 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null && break
  sleep 0.1
done
rss_mb() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$listener/status"; }
(
  while kill -0 $listener 2>/dev/null; do
    echo "$(date +%s) $(rss_mb)"
    sleep 10
  done
) >"$work/rss" 2>/dev/null &
sampler=$!
target/release/chokepoint-bench soak "127.0.0.1:$http" "127.0.0.1:$grpc" "$rate" "$seconds" >"$work/soak" &
soak=$!
sleep 1
python3 scripts/abuse_receiver.py 127.0.0.1 "$http" "$((seconds - 30))" >"$work/abuse" &
abuse=$!
wait $soak
wait $abuse
kill -INT $listener
wait $listener || true
kill $sampler 2>/dev/null || true

echo "## Sender"
cat "$work/soak"
echo
echo "## Abuse of the HTTP port, during the soak"
cat "$work/abuse"
echo
echo "## Receiver memory (every 10 s)"
awk 'NR == 1 { t0 = $1 } { printf "%s s: %s MB\n", $1 - t0, $2 }' "$work/rss" | paste -sd ' ' | fold -s -w 100
taken=$(sed -n 's/^soak done: \([0-9]*\) spans taken.*/\1/p' "$work/soak")
target/release/chokepoint-bench generate proto "$taken" "$work/same.otlp" >/dev/null
target/release/chokepoint traces "$work/same.otlp" --format json >"$work/file.json" || true
echo
echo "## The analysis"
python3 - "$work/listen.json" "$work/file.json" "$taken" "$work/rss" <<'PY'
import json, sys
live, file, taken = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
rss = [int(line.split()[1]) for line in open(sys.argv[4]) if len(line.split()) == 2]
received = live["traces"]["summary"]["spans"]
print(f"spans taken by the receiver (the sender's count): {taken}; analysed live: {received}; from the file: {file['traces']['summary']['spans']}")
def findings(report):
    return [(f["detector"], f["scope"].get("endpoint", ""), f["location"], f["evidence"]["sample"]["affected"],
             f["evidence"]["sample"]["total"], f["evidence"]["occurrences"]) for f in report["findings"]]
same = findings(live) == findings(file)
print(f"findings live = findings from the file: {same} ({len(findings(live))} findings)")
after_minute = rss[6:] or rss
print(f"receiver RSS after the first minute: {min(after_minute)}–{max(after_minute)} MB (peak {max(rss)} MB)")
for note in live["notes"]:
    print(f"note ({note['severity']}): {note['source']}: {note['message']}")
ok = received == taken and same
print("soak: PASS" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
PY
