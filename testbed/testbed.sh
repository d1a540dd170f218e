#!/usr/bin/env bash
# Brings the testbed up or down: a private PostgreSQL 15 cluster (pg_stat_statements preloaded,
# HypoPG installed), the Python virtualenv, the downstream service, a delay-injecting TCP proxy,
# and the instrumented shop service, all on loopback; as root also a network namespace behind a
# 20 Mbit/s shaped veth link, with a second shop instance serving across it. Idempotent; works as root on a fresh
# machine. Ports and URLs are written to $CHOKEPOINT_TESTBED (default /tmp/chokepoint-testbed)/env
# for the tests and for people; the state lives outside the checkout so the `postgres` user can
# reach it wherever the checkout is.
#
#   testbed/testbed.sh up       start everything (seeds the database the first time)
#   testbed/testbed.sh down     stop everything; leaves nothing running
#   testbed/testbed.sh status   what is running
#   testbed/testbed.sh deps     only install what it needs (PostgreSQL 15, HypoPG)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="${CHOKEPOINT_TESTBED:-/tmp/chokepoint-testbed}"
pgbin=/usr/lib/postgresql/15/bin
pg="$state/pg"
pgdata="$pg/data"
venv="$root/.venv"
# The shaped link: a network namespace whose only way to the testbed is a veth pair with a
# token-bucket filter on the host side, so responses to a client inside it cross a slow link.
netns=chokepoint-tb
host_if=cptb0
ns_if=cptb1
host_ip=10.231.0.1
ns_ip=10.231.0.2
shaped_rate=20mbit

log() { echo "testbed: $*" >&2; }

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

ensure_packages() {
  local missing=()
  [ -x "$pgbin/postgres" ] || missing+=(postgresql-15)
  [ -f /usr/share/postgresql/15/extension/hypopg.control ] || missing+=(postgresql-15-hypopg)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

setup_netns() {
  teardown_netns
  ip netns add "$netns"
  ip link add "$host_if" type veth peer name "$ns_if"
  ip link set "$ns_if" netns "$netns"
  ip addr add "$host_ip/30" dev "$host_if"
  ip link set "$host_if" up
  ip netns exec "$netns" ip addr add "$ns_ip/30" dev "$ns_if"
  ip netns exec "$netns" ip link set "$ns_if" up
  ip netns exec "$netns" ip link set lo up
  tc qdisc add dev "$host_if" root tbf rate "$shaped_rate" burst 32kbit latency 50ms
}

teardown_netns() {
  ip netns del "$netns" 2>/dev/null || true
  ip link del "$host_if" 2>/dev/null || true
}

wait_http() {
  local url=$1
  for _ in $(seq 100); do
    if "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$url', timeout=1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  log "$url did not answer; see $state/*.log"
  return 1
}

start_bg() {
  local name=$1; shift
  (cd "$root/testbed/service" && exec "$@") >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}

up() {
  mkdir -p "$state"; chmod 755 "$state"
  if [ -f "$state/env" ] && status >/dev/null 2>&1; then
    log "already up"; return 0
  fi
  down >/dev/null 2>&1 || true
  ensure_packages
  "$root/scripts/setup-python.sh"
  local pg_port app_port downstream_port proxy_port otlp_port shaped_port pg_far_port flask_port django_port
  pg_port=$(free_port); app_port=$(free_port); downstream_port=$(free_port)
  proxy_port=$(free_port); otlp_port=$(free_port); shaped_port=$(free_port); pg_far_port=$(free_port)
  flask_port=$(free_port); django_port=$(free_port)
  local shaped=0
  if [ "$(id -u)" = 0 ] && setup_netns 2>"$state/netns.log"; then
    shaped=1
  else
    log "no shaped link (creating a network namespace needs root; see $state/netns.log)"
  fi

  local fresh=0
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    rm -rf "$pg"; mkdir -p "$pgdata" "$pg/sock"
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$pg"; fi
    as_postgres "$pgbin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >/dev/null
    fresh=1
  fi
  mkdir -p "$pg/sock"
  if [ "$(id -u)" = 0 ]; then chown postgres "$pg/sock"; fi
  cat >"$pgdata/postgresql.auto.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pg/sock'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  as_postgres "$pgbin/pg_ctl" -D "$pgdata" -l "$pg/postgres.log" -w start >/dev/null
  local psql=("$pgbin/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -v ON_ERROR_STOP=1)
  # Seeded when new, or when seed.sql changed since (its checksum is kept in the database).
  local seed_sum
  seed_sum=$(md5sum "$root/testbed/seed.sql" | cut -d' ' -f1)
  if [ "$fresh" = 1 ] || [ "$("${psql[@]}" -d shop -tAc "SELECT obj_description('public.accounts'::regclass)" 2>/dev/null)" != "$seed_sum" ]; then
    log "seeding (about a minute at most)"
    "${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS shop" -c "CREATE DATABASE shop"
    "${psql[@]}" -d shop -f "$root/testbed/seed.sql" >/dev/null
    "${psql[@]}" -d shop -c "COMMENT ON TABLE accounts IS '$seed_sum'" >/dev/null
  fi

  cat >"$state/env" <<ENV
PG_PORT=$pg_port
DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$pg_port/shop
DATABASE_FAR_URL=postgresql+psycopg://postgres@127.0.0.1:$pg_far_port/shop
APP_URL=http://127.0.0.1:$app_port
FLASK_URL=http://127.0.0.1:$flask_port
DJANGO_URL=http://127.0.0.1:$django_port
DOWNSTREAM_URL=http://127.0.0.1:$downstream_port
DOWNSTREAM_FAR_URL=http://127.0.0.1:$proxy_port
OTLP_PORT=$otlp_port
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$otlp_port
ENV
  if [ "$shaped" = 1 ]; then
    cat >>"$state/env" <<ENV
NETNS=$netns
SHAPED_APP_URL=http://$host_ip:$shaped_port
SHAPED_RATE=$shaped_rate
ENV
  fi
  set -a; . "$state/env"; set +a
  export OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE="content-length,content-encoding"
  export OTEL_BSP_SCHEDULE_DELAY=500
  start_bg downstream "$venv/bin/python" -m uvicorn downstream:app --host 127.0.0.1 --port "$downstream_port" --no-access-log
  start_bg proxy "$venv/bin/python" delay_proxy.py --listen "$proxy_port" --target "$downstream_port" --connect-delay-ms 30
  start_bg pg-far "$venv/bin/python" delay_proxy.py --listen "$pg_far_port" --target "$pg_port" --round-trip-delay-ms 5
  start_bg app "$venv/bin/python" -m uvicorn app:app --host 127.0.0.1 --port "$app_port" --no-access-log
  (cd "$root/testbed/flask_shop" && exec "$venv/bin/python" app.py "$flask_port") >"$state/flask.log" 2>&1 &
  echo $! >"$state/flask.pid"
  (cd "$root/testbed/django_shop" && exec "$venv/bin/python" serve.py "$django_port") >"$state/django.log" 2>&1 &
  echo $! >"$state/django.pid"
  if [ "$shaped" = 1 ]; then
    start_bg app-shaped "$venv/bin/python" -m uvicorn app:app --host "$host_ip" --port "$shaped_port" --no-access-log
  fi
  wait_http "$DOWNSTREAM_URL/health"
  wait_http "$APP_URL/health"
  wait_http "$FLASK_URL/health"
  wait_http "$DJANGO_URL/health"
  wait_http "$DOWNSTREAM_FAR_URL/health"
  if [ "$shaped" = 1 ]; then wait_http "http://$host_ip:$shaped_port/health"; fi
  log "up: app $APP_URL, Flask $FLASK_URL, Django $DJANGO_URL, downstream $DOWNSTREAM_URL (far: $DOWNSTREAM_FAR_URL), PostgreSQL port $pg_port; env in $state/env"
}

down() {
  for name in app app-shaped flask django proxy pg-far downstream; do
    if [ -f "$state/$name.pid" ]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
  if [ -f "$pgdata/postmaster.pid" ]; then
    as_postgres "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ "$(id -u)" = 0 ]; then teardown_netns; fi
  rm -f "$state/env"
  log "down"
}

status() {
  local ok=0
  for name in app flask django proxy downstream; do
    if [ -f "$state/$name.pid" ] && kill -0 "$(cat "$state/$name.pid")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$state/$name.pid"))"
    else
      echo "$name: stopped"; ok=1
    fi
  done
  if [ -f "$pgdata/postmaster.pid" ]; then echo "postgres: running"; else echo "postgres: stopped"; ok=1; fi
  return $ok
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  deps) ensure_packages ;;
  *) echo "usage: testbed/testbed.sh up|down|status|deps" >&2; exit 2 ;;
esac
