#!/usr/bin/env bash
# Spans per second through the OpenTelemetry Collector into 1 and into 3 `chokepoint listen`
# shards (the Collector's load-balancing exporter routing by trace id, as docs/deployment.md
# sets it up): SPANS spans (default 2 million) of the benchmark's service posted to the
# Collector over OTLP/HTTP as fast as it takes them; the clock stops when the Collector has
# flushed and every shard has reported. Per shard: the spans it analysed, its CPU seconds (so
# spans per second of one core) and its peak RSS. On this 2-core machine the sender, the
# Collector and the shards share the cores: the Collector is the ceiling, not a shard.
# Usage: scripts/bench-shards.sh [SPANS]
set -euo pipefail
cd "$(dirname "$0")/.."
spans=${1:-2000000}
cargo build --release --quiet -p chokepoint -p chokepoint-bench
collector=$(scripts/build-collector.sh)
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "nothing on port $1" >&2; exit 1; }
ticks=$(getconf CLK_TCK)

echo "| shards | spans sent | seconds | spans/s through the Collector | per shard: spans, CPU s, spans per CPU s, peak RSS |"
echo "|--:|--:|--:|--:|---|"
for shards in 1 3; do
  pids=()
  ports=()
  for i in $(seq "$shards"); do
    port=$(free_port)
    target/release/chokepoint listen --http off --grpc "127.0.0.1:$port" --format json --quiet \
      >"$work/shard-$i.json" 2>/dev/null &
    pids+=($!)
    ports+=("\"127.0.0.1:$port\"")
    wait_port "$port"
  done
  http=$(free_port)
  cat >"$work/collector.yaml" <<YAML
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$http
processors:
  batch:
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        tls:
          insecure: true
    resolver:
      static:
        hostnames: [$(IFS=,; echo "${ports[*]}")]
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [loadbalancing]
YAML
  "$collector" --config "$work/collector.yaml" >/dev/null 2>"$work/collector.log" &
  otelcol=$!
  wait_port "$http"
  start=$(date +%s.%N)
  target/release/chokepoint-bench send "127.0.0.1:$http" "$spans" >/dev/null
  kill -TERM $otelcol
  wait $otelcol || true
  details=()
  for i in $(seq "$shards"); do
    pid=${pids[$((i - 1))]}
    read -r utime stime < <(awk '{ print $14, $15 }' "/proc/$pid/stat")
    hwm=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
    kill -INT "$pid"
    wait "$pid" || true
    got=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["traces"]["summary"]["spans"])' "$work/shard-$i.json")
    cpu=$(python3 -c "print(round(($utime + $stime) / $ticks, 1))")
    rate=$(python3 -c "print(round($got / max(($utime + $stime) / $ticks, 0.01)))")
    details+=("$got, ${cpu} s, $rate/s, ${hwm} MB")
  done
  end=$(date +%s.%N)
  seconds=$(python3 -c "print(round($end - $start, 1))")
  through=$(python3 -c "print(round($spans / ($end - $start)))")
  echo "| $shards | $spans | $seconds | $through | $(IFS=';'; echo "${details[*]}") |"
done
