#!/usr/bin/env bash
# The wheel, tested as a Python developer installs it: built by scripts/build-wheel.sh, installed
# into a fresh virtual environment, run with a PATH that holds no Rust toolchain and no libclang;
# `chokepoint --version` and `chokepoint traces examples/testbed.otlp` must give the verdict the
# cargo-built binary (the first argument) gives. auditwheel must find the manylinux tag the wheel
# claims, and the wheel must stay within its size budget.
#
#   scripts/test-wheel.sh target/debug/chokepoint
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
reference=$1
budget_mb=${CHOKEPOINT_WHEEL_BUDGET_MB:-12}
fail() { echo "test-wheel: FAIL: $*" >&2; exit 1; }

wheel=$(scripts/build-wheel.sh)
name=$(basename "$wheel")
case "$name" in
  *-manylinux_2_28_x86_64*.whl) ;;
  *) fail "$name is not tagged manylinux_2_28_x86_64" ;;
esac
size=$(stat -c %s "$wheel")
echo "test-wheel: $name, $((size / 1024)) kB (budget ${budget_mb} MB)"
[ "$size" -le $((budget_mb * 1024 * 1024)) ] || fail "the wheel is $((size / 1024)) kB, over ${budget_mb} MB"
# auditwheel reads the binary's symbol versions: the tag must be one the binary keeps.
audit=$("${CHOKEPOINT_CACHE:-$HOME/.cache/chokepoint}/wheel-venv/bin/auditwheel" show "$wheel")
echo "$audit" | grep -q 'manylinux_2_28_x86_64' || fail "auditwheel does not agree: $audit"

env_dir=$(mktemp -d /tmp/chokepoint-wheel-XXXXXX)
trap 'rm -rf "$env_dir"' EXIT
python3 -m venv "$env_dir/venv"
started=$(date +%s.%N)
"$env_dir/venv/bin/pip" install --quiet --disable-pip-version-check --no-index "$wheel"
# No cargo, no rustc, no libclang: the PATH a Python developer has, the environment's bin first.
clean_path="$env_dir/venv/bin:/usr/bin:/bin"
if PATH="$clean_path" command -v cargo >/dev/null || PATH="$clean_path" command -v rustc >/dev/null; then
  fail "the clean PATH still finds a Rust toolchain"
fi
version=$(env -i PATH="$clean_path" HOME="$env_dir" chokepoint --version)
[ "$version" = "$("$reference" --version)" ] || fail "chokepoint --version says $version"
env -i PATH="$clean_path" HOME="$env_dir" LD_LIBRARY_PATH= chokepoint traces examples/testbed.otlp --format json \
  > "$env_dir/wheel.json" || [ $? -eq 1 ]
finished=$(date +%s.%N)
"$reference" traces examples/testbed.otlp --format json > "$env_dir/cargo.json" || [ $? -eq 1 ]
python3 - "$env_dir/wheel.json" "$env_dir/cargo.json" <<'PY' || fail "the wheel's verdict differs from the cargo-built binary's"
import json, sys
wheel, cargo = (json.load(open(p)) for p in sys.argv[1:])
strip = lambda r: (r["verdict"], [(f["id"], f["detector"], f["title"]) for f in r["findings"]])
assert wheel["findings"], "no finding from the wheel"
assert strip(wheel) == strip(cargo), (strip(wheel), strip(cargo))
print(f"test-wheel: the same verdict: {wheel['findings'][0]['detector']} — {wheel['findings'][0]['title'][:80]}…")
PY
echo "test-wheel: pip install of the wheel to the first verdict: $(python3 -c "print(f'{$finished - $started:.1f}')") s"
