#!/usr/bin/env bash
# One shard's peak memory (issue #24's budget: 256 MB) for the shapes that push it, each through
# `chokepoint traces` (GNU time's maximum RSS), and a receiver fed as fast as it takes spans:
#   wide     one trace, a root and 1,000,000 database children (OTLP/JSON Lines of 1,000 spans)
#   routes   200,000 requests, each to its own route with its own statement
#   bench    the 1M-span benchmark files (scripts/bench.sh's generator), protobuf and JSON Lines
#   listen   `chokepoint listen` fed LISTEN_SPANS spans (default 20 million) over OTLP/HTTP by
#            `chokepoint-bench send`, its peak RSS (VmHWM) — and spans/s against `traces` on the
#            same kind of spans
# Usage: scripts/bench-shard-memory.sh [LISTEN_SPANS]
set -euo pipefail
cd "$(dirname "$0")/.."
listen_spans=${1:-20000000}
cargo build --release --quiet -p chokepoint -p chokepoint-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
measure() { # NAME FILE
  /usr/bin/time -f "%e %M" -o "$work/time" target/release/chokepoint traces "$2" --format json --quiet >/dev/null || true
  read -r seconds kb <"$work/time"
  echo "| $1 | $(du -m "$2" | cut -f1) MB | $seconds s | $((kb / 1024)) MB |"
}
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def attr(key, value):
    return {"key": key, "value": {"stringValue": value}}
def line(out, spans, service="shop"):
    out.write(json.dumps({"resourceSpans": [{"resource": {"attributes": [attr("service.name", service)]},
                                             "scopeSpans": [{"spans": spans}]}]}) + "\n")
with open(f"{work}/wide.jsonl", "w") as out:
    n, tid = 1_000_000, "5b8efff798038103d269b633813fc60c"
    line(out, [{"traceId": tid, "spanId": "0000000000000001", "name": "GET /orders", "kind": 2,
                "startTimeUnixNano": "1000000000", "endTimeUnixNano": str(1000000000 + n * 1000 + 1000),
                "attributes": [attr("http.route", "/orders"), attr("http.request.method", "GET")]}])
    batch = []
    for i in range(n):
        start = 1000000000 + i * 1000 + 100
        batch.append({"traceId": tid, "spanId": f"{i + 2:016x}", "parentSpanId": "0000000000000001",
                      "name": "SELECT shop.items", "kind": 3, "startTimeUnixNano": str(start),
                      "endTimeUnixNano": str(start + 500),
                      "attributes": [attr("db.system.name", "postgresql"),
                                     attr("db.query.text", f"SELECT id FROM items WHERE order_id = {i}")]})
        if len(batch) == 1000:
            line(out, batch)
            batch = []
with open(f"{work}/routes.jsonl", "w") as out:
    batch = []
    for i in range(200_000):
        tid, start = f"{i + 1:032x}", 1000000000 + i * 1_000_000
        batch += [{"traceId": tid, "spanId": "0000000000000001", "name": "GET", "kind": 2,
                   "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 900_000),
                   "attributes": [attr("http.route", f"/r{i}"), attr("http.request.method", "GET")]},
                  {"traceId": tid, "spanId": "0000000000000002", "parentSpanId": "0000000000000001",
                   "name": "SELECT", "kind": 3, "startTimeUnixNano": str(start + 1000),
                   "endTimeUnixNano": str(start + 800_000),
                   "attributes": [attr("db.system.name", "postgresql"),
                                  attr("db.query.text", f"SELECT * FROM t{i} WHERE id = 1")]}]
        if len(batch) >= 1000:
            line(out, batch)
            batch = []
    if batch:
        line(out, batch)
PY
target/release/chokepoint-bench generate proto 1000000 "$work/spans.otlp" >/dev/null
target/release/chokepoint-bench generate json 1000000 "$work/spans.jsonl" >/dev/null
echo "| shape | input | time | peak RSS |"
echo "|---|--:|--:|--:|"
measure "one trace, a root and 1,000,000 database children" "$work/wide.jsonl"
measure "200,000 routes, each with its own statement" "$work/routes.jsonl"
measure "the 1M-span benchmark file, OTLP/protobuf" "$work/spans.otlp"
measure "the 1M-span benchmark file, OTLP/JSON Lines" "$work/spans.jsonl"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/chokepoint listen --http "127.0.0.1:$port" --grpc off --format json --quiet >"$work/listen.json" 2>/dev/null &
listener=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
start=$(date +%s.%N)
target/release/chokepoint-bench send "127.0.0.1:$port" "$listen_spans" >/dev/null
end=$(date +%s.%N)
hwm=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$listener/status")
kill -INT $listener
wait $listener || true
rate=$(python3 -c "print(round($listen_spans / ($end - $start)))")
echo "| a receiver fed $listen_spans spans as fast as it takes them ($(python3 -c "print(round($end - $start))") s, $rate spans/s) | OTLP/HTTP | | $hwm MB |"
