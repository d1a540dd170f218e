#!/usr/bin/env bash
# One very wide trace — a root and N database children (default 1, 2 and 3 million), OTLP/JSON
# Lines of 1,000 spans — through `chokepoint traces`: time and peak RSS, which must not grow with
# N (the trace is analysed in parts, and the parts handed on are bounded in spans).
# Usage: scripts/bench-wide.sh [N…]
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 2000000 3000000)
cargo build --release --quiet -p chokepoint
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| children | file | time | peak RSS |"
echo "|--:|--:|--:|--:|"
for n in "${sizes[@]}"; do
  python3 - "$n" "$work/wide.jsonl" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
tid = "5b8efff798038103d269b633813fc60c"
def attr(key, value):
    return {"key": key, "value": {"stringValue": value}}
root = {"traceId": tid, "spanId": "0000000000000001", "name": "GET /orders", "kind": 2,
        "startTimeUnixNano": "1000000000", "endTimeUnixNano": str(1000000000 + n * 1000 + 1000),
        "attributes": [attr("http.route", "/orders"), attr("http.request.method", "GET")]}
with open(path, "w") as out:
    def line(spans):
        out.write(json.dumps({"resourceSpans": [{"resource": {"attributes": [attr("service.name", "shop")]},
                                                 "scopeSpans": [{"spans": spans}]}]}) + "\n")
    line([root])
    batch = []
    for i in range(n):
        start = 1000000000 + i * 1000 + 100
        batch.append({"traceId": tid, "spanId": f"{i + 2:016x}", "parentSpanId": "0000000000000001",
                      "name": "SELECT shop.items", "kind": 3, "startTimeUnixNano": str(start),
                      "endTimeUnixNano": str(start + 500),
                      "attributes": [attr("db.system.name", "postgresql"),
                                     attr("db.query.text", f"SELECT id FROM items WHERE order_id = {i}")]})
        if len(batch) == 1000:
            line(batch)
            batch = []
    if batch:
        line(batch)
PY
  size=$(du -m "$work/wide.jsonl" | cut -f1)
  /usr/bin/time -f "%e %M" -o "$work/time" target/release/chokepoint traces "$work/wide.jsonl" --format json >/dev/null || true
  read -r seconds kb <"$work/time"
  echo "| $n | $size MB | $seconds s | $((kb / 1024)) MB |"
done
