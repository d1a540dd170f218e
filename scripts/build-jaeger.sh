#!/usr/bin/env bash
# Builds Jaeger v2 (cmd/jaeger of github.com/jaegertracing/jaeger) from the Go module proxy, for
# the test that reads traces back from Jaeger's api/v3. `go install module@version` refuses a
# module with replace directives, so the module is downloaded and built inside a copy of it.
# Everything stays in Go's caches and ~/.cache/chokepoint/bin, never in the repository. Prints
# the binary's path. A warm run takes a second; a cold one, minutes (docs/deployment.md).
set -euo pipefail
version=v1.75.0
out="${CHOKEPOINT_CACHE:-$HOME/.cache/chokepoint}/bin"
bin="$out/jaeger-$version"
if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi
command -v go >/dev/null || { echo "build-jaeger: go is not installed" >&2; exit 1; }
work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
dir="$(cd "$work" && go mod download -json "github.com/jaegertracing/jaeger@$version" \
    | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[[ -d "$dir" ]] || { echo "build-jaeger: the module proxy did not give jaeger $version" >&2; exit 1; }
cp -r "$dir" "$work/jaeger"
chmod -R u+w "$work/jaeger"
start=$SECONDS
(cd "$work/jaeger" && go build -trimpath -o "$work/jaeger-bin" ./cmd/jaeger) >&2
mkdir -p "$out"
mv "$work/jaeger-bin" "$bin"
echo "build-jaeger: built in $((SECONDS - start)) s" >&2
echo "$bin"
