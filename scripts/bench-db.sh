#!/usr/bin/env bash
# The database inspector's own cost (issue #5), on a private PostgreSQL 15 cluster started here
# (initdb into a temporary folder, a free loopback port, pg_stat_statements preloaded):
#   - sampling at 10 Hz: CPU used by the inspector's backend process on the server (from
#     /proc/PID/stat) over a 30 s `chokepoint db --watch`, with the database idle and with
#     `pgbench` at scale 1 and 16 clients (lock waits on every sample: pg_blocking_pids runs);
#   - a snapshot over 5,000 distinct statements in pg_stat_statements: wall time of
#     `chokepoint db` (best of 3), plans and HypoPG costing included.
# Prints a Markdown table for the README. Usage: scripts/bench-db.sh
set -euo pipefail
cd "$(dirname "$0")/.."
testbed/testbed.sh deps >/dev/null
pgbin=/usr/lib/postgresql/15/bin
cargo build --release --quiet -p chokepoint
chokepoint=$PWD/target/release/chokepoint
watch_s=30; statements=5000

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
dir=$(mktemp -d /tmp/chokepoint-bench-db.XXXXXX)
chown postgres "$dir" 2>/dev/null || true
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres "$pgbin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
cat >> "$dir/data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.max = 10000
fsync = off
EOF
as_postgres "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
trap 'as_postgres "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$dir"' EXIT
url="postgresql://postgres@127.0.0.1:$port/postgres"
psql() { command psql -q -X -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }
psql -c "CREATE EXTENSION pg_stat_statements; CREATE EXTENSION hypopg;" >/dev/null
"$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -i -q -s 1 postgres >/dev/null 2>&1

# CPU seconds of the inspector's backend over one watch; the watch's own samples count.
watch_cost() {
  "$chokepoint" db "$url" --watch ${watch_s}s --format json --quiet > "$dir/watch.json" 2>/dev/null &
  local watcher=$! pid=""
  for _ in $(seq 50); do
    pid=$(psql -tA -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'chokepoint' LIMIT 1")
    [ -n "$pid" ] && break
    sleep 0.1
  done
  local before after ticks
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep $((watch_s - 1))
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo "$before")
  wait $watcher
  ticks=$(getconf CLK_TCK)
  python3 - "$before" "$after" "$ticks" "$((watch_s - 1))" "$dir/watch.json" <<'EOF'
import json, sys
before, after, ticks, seconds, path = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
activity = json.load(open(path))["database"]["activity"]
print(f"{(after - before) / ticks / seconds * 100:.2f} % of one core | {activity['samples']} samples, "
      f"{activity['lock_waiting_mean']:.1f} sessions waiting on average")
EOF
}

idle=$(watch_cost)
"$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -c 16 -j 2 -T $((watch_s + 5)) postgres >/dev/null 2>&1 &
bench=$!
sleep 1
busy=$(watch_cost)
wait $bench

# 5,000 distinct statements: 50 tables of 100 columns, each column filtered in each table.
python3 -c "
for t in range(50):
    print(f'CREATE TABLE wide{t} (' + ', '.join(f'c{c} int' for c in range(100)) + ');')
" | psql >/dev/null
psql -c "SELECT pg_stat_statements_reset()" >/dev/null
python3 -c "
for i in range($statements):
    print(f'SELECT c{i % 100} FROM wide{i // 100 % 50} WHERE c{i % 100} = {i};')
" | psql >/dev/null
distinct=$(psql -tA -c "SELECT count(*) FROM pg_stat_statements")
snapshot_s=()
for _ in 1 2 3; do
  start=$(date +%s.%N)
  "$chokepoint" db "$url" --format json --quiet > "$dir/snapshot.json"
  snapshot_s+=("$(python3 -c "import time; print(f'{time.time() - $start:.2f}')")")
done
best=$(printf '%s\n' "${snapshot_s[@]}" | sort -g | head -1)

echo "| measurement | result |"
echo "|---|---|"
echo "| \`--watch ${watch_s}s\` at 10 Hz, idle database: server CPU of the inspector's session | $idle |"
echo "| \`--watch ${watch_s}s\` at 10 Hz, pgbench scale 1, 16 clients: server CPU of the inspector's session | $busy |"
echo "| \`chokepoint db\` snapshot, $distinct statements in pg_stat_statements (best of 3) | $best s (runs: ${snapshot_s[*]}) |"
