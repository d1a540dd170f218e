#!/usr/bin/env bash
# The scan's speed against Ruff's (`ruff check --no-cache --select ASYNC`, from PyPI) on the same
# file lists with the same threads, timed by hyperfine in one run: CPython's standard library
# (this machine's Python) and Wagtail 6.3.1 (scripts/scan-corpus.sh fetches it). Prints MB/s and
# the ratio. Installs ruff into .venv and hyperfine with cargo when missing.
# Usage: scripts/bench-scan.sh [THREADS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
ruff_version=0.17.6
[ -x .venv/bin/ruff ] && [ "$(.venv/bin/ruff --version)" = "ruff $ruff_version" ] || .venv/bin/pip install --quiet "ruff==$ruff_version"
command -v hyperfine >/dev/null || cargo install --locked --quiet hyperfine@1.20.0
cargo build --release --locked --quiet -p chokepoint
scripts/scan-corpus.sh target/release/chokepoint >/dev/null
bin=$PWD/target/release/chokepoint
stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
wagtail=${XDG_CACHE_HOME:-$HOME/.cache}/chokepoint/corpus/wagtail-6.3.1/wagtail
out=target/bench-scan
mkdir -p "$out"
for corpus in stdlib wagtail; do
  dir=${!corpus}
  # The same files for both: every .py under the folder but site-packages (ruff and the scan
  # read each file named on the command line).
  find "$dir" -name '*.py' -not -path '*/site-packages/*' | sort >"$out/$corpus.files"
  files=$(wc -l <"$out/$corpus.files")
  bytes=$(xargs cat <"$out/$corpus.files" | wc -c)
  RAYON_NUM_THREADS=$threads hyperfine --warmup 2 --runs 10 --export-json "$out/$corpus.json" --style basic \
    -n chokepoint "xargs -a $out/$corpus.files $bin scan --format json --quiet >/dev/null" \
    -n ruff "xargs -a $out/$corpus.files $PWD/.venv/bin/ruff check --no-cache --select ASYNC --exit-zero --quiet >/dev/null" \
    >/dev/null
  python3 - "$out/$corpus.json" "$corpus" "$files" "$bytes" "$threads" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
name, files, size, threads = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ours, ruff = results["chokepoint"]["mean"], results["ruff"]["mean"]
mb = size / 1e6
print(f"bench-scan: {name}: {files} files, {mb:.1f} MB, {threads} threads: chokepoint {ours*1e3:.0f} ms "
      f"({mb/ours:.0f} MB/s), ruff --select ASYNC {ruff*1e3:.0f} ms ({mb/ruff:.0f} MB/s): {ours/ruff:.2f}x ruff's time")
PY
done
