#!/usr/bin/env bash
# Fuzzes every parser of outside input with libFuzzer (the libfuzzer-sys crate, built on the
# stable toolchain with LLVM's SanitizerCoverage, as cargo-fuzz builds without a sanitizer):
#   traces   any bytes as a trace file: sniffing, gzip, OTLP/JSON, OTLP/protobuf, Jaeger, Zipkin
#   sql      any text as a statement: the traces' normalizer, PostgreSQL's parser and redaction
#   profile  any bytes as a profile: gzip, collapsed stacks, speedscope, pprof, cProfile
#   http1    any bytes as a server's answers: the load generator's HTTP/1.1 response reader
#   prometheus  any bytes as a target's Prometheus text (load --metrics)
#   plan     any bytes as PostgreSQL's EXPLAIN (FORMAT JSON): the database inspector's plan reader
#   run      any bytes as a saved run's evidence.json (`report`, `compare`): every detector, the
#            verdict, the renderings, a comparison
#   damaged_run  real saved runs damaged (elements removed, numbers negative or out of range,
#            fields removed), read by the saved-run library: refused with the file, or analysed
# and two structure-aware targets, whose inputs `arbitrary` builds from the fuzzer's bytes:
#   otlp_tree  span trees encoded as OTLP/protobuf, read, analysed and rendered end to end
#   plan_tree  plan trees written as EXPLAIN JSON, and what the reader finds checked against them
#   pprof_tree pprof profiles of Python-looking code, read, analysed and rendered end to end
# Seeds come from the test data. A crash, a timeout (10 s an input) or more than 2 GiB of
# memory fails the run and leaves the input in ~/.cache/chokepoint/fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]    each target for SECONDS (default 20)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(traces sql profile http1 prometheus plan run damaged_run otlp_tree plan_tree pprof_tree python)
triple=$(rustc -vV | sed -n 's/^host: //p')
# The instrumented build and the corpus live in the machine's cache, so a fresh clone rebuilds
# only the workspace's crates and every run starts from the corpus the last one grew.
out=${CHOKEPOINT_FUZZ_DIR:-${CHOKEPOINT_CACHE:-$HOME/.cache/chokepoint}/fuzz}
"$root/scripts/setup-build.sh" >/dev/null
echo "fuzz: building ${targets[*]} (libFuzzer, coverage-instrumented)"
(cd "$root/fuzz" && RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
  cargo build --quiet --release --target "$triple" --target-dir "$out" --locked)

seed() {
  local target=$1 corpus=$out/corpus/$1
  mkdir -p "$corpus"
  case $target in
    traces) cp "$root"/crates/traces/tests/data/* "$root"/examples/*.otlp* "$corpus"/ ;;
    profile) cp "$root"/crates/profile/tests/data/workload.* "$corpus"/ ;;
    http1) printf 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n' >"$corpus/seed-length"
           printf 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n' >"$corpus/seed-chunked"
           printf 'HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nread to the close' >"$corpus/seed-close" ;;
    plan) cp "$root"/crates/db/tests/data/plan-*.json "$corpus"/ ;;
    python) for file in "$root"/crates/scan/tests/fixtures/*/*.py "$root"/testbed/*/app.py "$root"/testbed/django_shop/dj/*.py; do
              cp "$file" "$corpus/$(basename "$(dirname "$file")")-$(basename "$file")"
            done ;;
    run) for fixture in "$root"/crates/detect/tests/fixtures/*/*.json; do
           cp "$fixture" "$corpus/$(basename "$(dirname "$fixture")")-$(basename "$fixture")"
         done
         for example in shop.otlp.jsonl testbed.otlp; do
           rm -rf "$out/seed-run"
           cargo run --quiet --manifest-path "$root/Cargo.toml" -p chokepoint -- traces "$root/examples/$example" \
             --run-dir "$out/seed-run" --format json >/dev/null
           cp "$out/seed-run/evidence.json" "$corpus/$example-evidence.json"
         done ;;
    damaged_run) for i in $(seq 0 15); do printf "\\x$(printf %x $((i % 2)))\\x$(printf %x $i)\\x$(printf %x $((i * 7)))\\x$(printf %x $((i * 13 % 256)))\\x01" >"$corpus/seed-$i"; done ;;
    prometheus) printf '# HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n# TYPE db_pool_in_use gauge\ndb_pool_in_use{pool="main"} 4\nhttp_requests_in_flight 3\n' >"$corpus/seed" ;;
    sql) python3 - "$root/crates/traces/tests/data/shop.protojson.jsonl" "$corpus" <<'PY'
import hashlib, re, sys
texts = set(re.findall(r'"db\.statement","value":\{"stringValue":"([^"]{1,400})"', open(sys.argv[1]).read()))
for text in texts:
    open(f"{sys.argv[2]}/{hashlib.md5(text.encode()).hexdigest()[:16]}", "w").write(text)
PY
         printf 'SELECT * FROM users WHERE email = $1 ORDER BY created_at DESC LIMIT 20' >"$corpus/seed-limit"
         printf "SELECT id FROM t WHERE name ILIKE '%%x%%' AND a IN (1, 2, 3)" >"$corpus/seed-pattern" ;;
  esac
}

status=0
for target in "${targets[@]}"; do
  seed "$target"
  mkdir -p "$out/artifacts/$target"
  log=$out/$target.log
  if "$out/$triple/release/$target" "$out/corpus/$target" -max_total_time="$seconds" -timeout=10 \
       -rss_limit_mb=2048 -max_len=262144 -artifact_prefix="$out/artifacts/$target/" -print_final_stats=1 \
       >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
    echo "fuzz: $target: $runs executions in ${seconds} s, no crash (peak RSS ${rss} MB)"
  else
    echo "fuzz: $target: FAILED — see $log and $out/artifacts/$target/"
    tail -30 "$log"
    status=1
  fi
done
exit $status
