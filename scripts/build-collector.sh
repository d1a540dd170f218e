#!/usr/bin/env bash
# Builds an OpenTelemetry Collector with exactly what the shard test needs: the OTLP receiver,
# the batch processor, the OTLP exporter and the contrib load-balancing exporter (routing by
# trace id). Uses the Collector's own builder (ocb), pinned; everything comes from the Go module
# proxy and stays in Go's caches (GOMODCACHE, GOCACHE) and ~/.cache/chokepoint/bin — never in
# the repository. Prints the binary's path. A warm run takes a second; a cold one, minutes
# (docs/deployment.md says how many).
#
# The release: 0.161.0 is the newest whose load-balancing exporter the module proxy serves
# (0.162.0 to 0.165.1 answer 403 "not available"); the core modules go with it at 1.67.0.
set -euo pipefail
release=0.161.0
core=1.67.0
out="${CHOKEPOINT_CACHE:-$HOME/.cache/chokepoint}/bin"
bin="$out/otelcol-chokepoint-$release"
if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi
command -v go >/dev/null || { echo "build-collector: go is not installed" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
GOBIN="$work/tools" go install "go.opentelemetry.io/collector/cmd/builder@v$release" >&2
cat > "$work/manifest.yaml" <<YAML
dist:
  name: otelcol-chokepoint
  description: OpenTelemetry Collector for chokepoint's shard tests
  output_path: $work/dist
  version: $release
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v$release
processors:
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor v$release
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/otlpexporter v$release
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter v$release
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider v$core
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider v$core
replaces:
  # The version the exporter asks for answers 403 "not available" at the module proxy.
  - github.com/aws/aws-sdk-go-v2/service/servicediscovery => github.com/aws/aws-sdk-go-v2/service/servicediscovery v1.49.0
YAML
start=$SECONDS
"$work/tools/builder" --config "$work/manifest.yaml" >&2
mkdir -p "$out"
mv "$work/dist/otelcol-chokepoint" "$bin"
echo "build-collector: built in $((SECONDS - start)) s" >&2
echo "$bin"
