#!/usr/bin/env bash
# The observer effect of `chokepoint diagnose` (issue #13): the capacity it measures with every
# source on — the PostgreSQL watch (10 Hz), py-spy on the target (100 Hz), /proc sampling — against
# the same ramp with them off (`diagnose --no-pid --no-profile`, no --pg), on the testbed's
# CPU-bound route, taking turns, two rounds. The OTLP receiver is on in both: the instrumented
# service exports its spans either way, and an exporter with nowhere to send retries (that costs
# the service more than a receiver does).
# Needs the testbed up (testbed/testbed.sh up). Prints a Markdown table for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
state="${CHOKEPOINT_TESTBED:-/tmp/chokepoint-testbed}"
[ -f "$state/env" ] || { echo "the testbed is not up: testbed/testbed.sh up" >&2; exit 2; }
set -a; . "$state/env"; set +a
cargo build --release --quiet -p chokepoint
chokepoint=target/release/chokepoint
url="$APP_URL/cpu-saturation/bad"
ramp=(--model open --rate 10,20,30,40,60 --step-duration 5s --format json --quiet)
pg="${DATABASE_URL/+psycopg/}"
runs=$(mktemp -d)
capacity() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(max(s["throughput_rps"] for s in r["load"]["steps"]))'; }
off=""; on=""
for round in 1 2; do
  off="$off $("$chokepoint" diagnose "$url" "${ramp[@]}" --otlp "127.0.0.1:$OTLP_PORT" --no-pid --no-profile \
      --run-dir "$runs/off-$round" 2>/dev/null | capacity)"
  on="$on $("$chokepoint" diagnose "$url" "${ramp[@]}" --otlp "127.0.0.1:$OTLP_PORT" --pg "$pg" \
      --py-spy .venv/bin/py-spy --run-dir "$runs/on-$round" 2>/dev/null | capacity)"
done
rm -rf "$runs"
best() { tr ' ' '\n' | sort -g | tail -1; }
off=$(echo $off | best); on=$(echo $on | best)
echo "| $url, open model 10–60 requests/s | capacity (best of 2) |"
echo "|---|--:|"
echo "| samplers off (\`diagnose --no-pid --no-profile\`, no \`--pg\`; receiver on) | $(printf '%.1f' "$off") requests/s |"
echo "| every source on (\`diagnose --pg\`: receiver, database watch 10 Hz, py-spy 100 Hz, /proc) | $(printf '%.1f' "$on") requests/s |"
awk -v a="$off" -v b="$on" 'BEGIN { printf "\nThe samplers cost %.1f %% of the capacity.\n", (a - b) / a * 100 }'
