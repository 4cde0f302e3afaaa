#!/usr/bin/env bash
# Brings the whole system up on this machine: installs what is missing, starts Redis and a MongoDB-wire
# server when none answers at REDIS_URL / MONGO_URL, starts the simulated venue (`orders exchange`) in
# the background on a free local port (LOCAL_EXCHANGE_PORT, 3001 and up; its operations port
# LOCAL_EXCHANGE_OPS_PORT, 9465 and up) unless EXCHANGE_URL names a venue already, then runs
# `orders all` (API + placement actors + execution actors + execution gateway) in the foreground,
# placing orders at that venue and reading its execution feed (ws://.../executions, derived from
# EXCHANGE_URL unless EXCHANGE_FEED_URL is set). Ctrl-C (or SIGTERM) stops everything it started,
# newest first, and waits for each to exit. Data (and the venue's log) lives in .local/ of the clone.
#
# The MongoDB-wire server is `mongod` when installed, else FerretDB (scripts/install-ferretdb.sh) on a
# PostgreSQL cluster of its own in .local/postgres (Debian's `postgresql` binaries, installed when
# missing), tuned by scripts/ferretdb-postgres.sql; on SQLite in .local/mongo only where PostgreSQL
# cannot be installed, or with LOCAL_FERRETDB_BACKEND=sqlite (the data of the SQLite runs before
# PostgreSQL became the default stays there, it is not migrated).
set -euo pipefail
cd "$(dirname "$0")/.."
export PORT=${PORT:-3000}
export MONGO_URL=${MONGO_URL:-mongodb://127.0.0.1:27017/orders}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
data=${LOCAL_DATA_DIR:-$PWD/.local}
backend=${LOCAL_FERRETDB_BACKEND:-postgresql}
pg_port=${LOCAL_POSTGRES_PORT:-54329}
# FerretDB's pgx pool (its default is 50). FerretDB deadlocks for good when its clients run more
# concurrent operations than the pool has connections (an operation holding one connection waits for a
# second one): the sum of the clients' MongoDB pools (MONGO_MAX_POOL_SIZE per process, default 32) must
# stay below it, and it stays below PostgreSQL's max_connections (300, below).
pool_max_conns=200

command -v bun >/dev/null || npm install -g bun
[ -d node_modules ] || bun install --frozen-lockfile

hostport() { local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; rest=${rest%%\?*}; echo "$rest"; }
answers() { (exec 3<>"/dev/tcp/${1%%:*}/${1##*:}") 2>/dev/null; }
apt_updated=""
apt_install() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  [ -n "$apt_updated" ] || { "${sudo[@]}" apt-get update -qq >/dev/null && apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}
# PostgreSQL's server binaries: POSTGRES_BIN, else the newest /usr/lib/postgresql/N/bin (Debian).
postgres_bin() {
  if [ -n "${POSTGRES_BIN:-}" ] && [ -x "$POSTGRES_BIN/postgres" ]; then echo "$POSTGRES_BIN"; return; fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] && [ -x "$bin/postgres" ] && echo "$bin"
}

# Everything started, stopped newest first with its signal (PostgreSQL: SIGINT, its fast shutdown),
# each waited for. The servers run in sessions of their own (setsid): Ctrl-C reaches only this script
# and the service, so the service drains against servers that are still up, then they stop in order.
started=()
signals=()
track() { started+=("$1"); signals+=("$2"); }
detach=()
command -v setsid >/dev/null && detach=(setsid)
cleanup() {
  trap - EXIT INT TERM HUP
  local i
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    kill -"${signals[i]}" "${started[i]}" 2>/dev/null || true
    wait "${started[i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

redis_at=$(hostport "$REDIS_URL"); redis_at=${redis_at/localhost/127.0.0.1}; [[ $redis_at == *:* ]] || redis_at="$redis_at:6379"
if ! answers "$redis_at"; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$data/redis"
  "${detach[@]}" redis-server --port "${redis_at##*:}" --bind 127.0.0.1 --dir "$data/redis" --appendonly yes --save "" --daemonize no --loglevel warning &
  track $! TERM
  echo "started redis-server on $redis_at (data in $data/redis, AOF on)"
fi

# FerretDB's own PostgreSQL in $data/postgres: initdb once (as the `postgres` user when root, since
# PostgreSQL refuses to run as root), custom plans so that the GIN indexes of
# scripts/ferretdb-postgres.sql serve FerretDB's prepared statements, fsync as by default (durable).
# Runs in a condition (set -e is off there), hence the explicit `|| fail`.
start_postgres() {
  local bin=$1 dir=$data/postgres as=() _
  local pgdata=$dir/data
  fail() { echo "run-local: $*" >&2; return 1; }
  mkdir -p "$pgdata" || fail "cannot create $pgdata" || return 1
  if [ "$(id -u)" = 0 ]; then
    as=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
    chown -R postgres "$dir" || fail "cannot give $dir to the postgres user" || return 1
    if ! "${as[@]}" test -w "$pgdata"; then
      # A clone below a private home (/root is 0700): the postgres user cannot walk to it. Its data goes
      # to a directory of its own instead, one per data directory, kept across runs like .local.
      dir=/var/lib/orders-local/$(printf '%s' "$data" | sha1sum | cut -c1-12)/postgres
      pgdata=$dir/data
      mkdir -p "$pgdata" && chown -R postgres "$dir" && chmod 755 /var/lib/orders-local "$(dirname "$dir")" ||
        fail "cannot prepare $dir for the postgres user" || return 1
      "${as[@]}" test -w "$pgdata" ||
        fail "the postgres user cannot reach $pgdata (set LOCAL_DATA_DIR, or LOCAL_FERRETDB_BACKEND=sqlite)" || return 1
      echo "PostgreSQL's data is in $pgdata (the postgres user cannot reach $data)"
    fi
  fi
  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres)
  if answers "127.0.0.1:$pg_port"; then
    echo "using the PostgreSQL that answers on 127.0.0.1:$pg_port"
  else
    if [ ! -f "$pgdata/PG_VERSION" ]; then
      "${as[@]}" "$bin/initdb" -D "$pgdata" -A trust -U postgres -E UTF8 --locale=C >>"$dir/initdb.log" 2>&1 ||
        fail "initdb failed, see $dir/initdb.log" || return 1
    fi
    "${detach[@]}" "${as[@]}" "$bin/postgres" -D "$pgdata" -p "$pg_port" -c listen_addresses=127.0.0.1 \
      -c unix_socket_directories= -c plan_cache_mode=force_custom_plan -c max_connections=300 \
      >>"$dir/postgres.log" 2>&1 &
    track $! INT
    for _ in $(seq 1 150); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.2; done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || fail "PostgreSQL did not start, see $dir/postgres.log" || return 1
    echo "started PostgreSQL on 127.0.0.1:$pg_port (data in $pgdata)"
  fi
  if [ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'" postgres)" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE ferretdb" postgres || fail "cannot create the ferretdb database" || return 1
  fi
  "${psql[@]}" -f scripts/ferretdb-postgres.sql ferretdb || fail "scripts/ferretdb-postgres.sql failed" || return 1
}

mongo_at=$(hostport "$MONGO_URL"); mongo_at=${mongo_at/localhost/127.0.0.1}; [[ $mongo_at == *:* ]] || mongo_at="$mongo_at:27017"
if ! answers "$mongo_at"; then
  if command -v mongod >/dev/null; then
    mkdir -p "$data/mongo"
    "${detach[@]}" mongod --port "${mongo_at##*:}" --bind_ip 127.0.0.1 --dbpath "$data/mongo" --quiet &
    track $! TERM
    echo "started mongod on $mongo_at"
  else
    ferretdb=$(bash scripts/install-ferretdb.sh)
    pg_bin=""
    if [ "$backend" = postgresql ]; then
      pg_bin=$(postgres_bin) || {
        echo "installing PostgreSQL (Debian: postgresql) for FerretDB"
        apt_install postgresql || echo "run-local: could not install postgresql; FerretDB runs on SQLite" >&2
        pg_bin=$(postgres_bin) || pg_bin=""
      }
    fi
    if [ -n "$pg_bin" ]; then
      start_postgres "$pg_bin" || exit 1
      mkdir -p "$data/ferretdb"
      # GOGC: see FERRETDB_GOGC in test/support/servers/ferretdb.ts (FerretDB's own CPU, measured).
      GOGC=${FERRETDB_GOGC:-400} "${detach[@]}" "$ferretdb" --handler=postgresql \
        --postgresql-url="postgres://postgres@127.0.0.1:$pg_port/ferretdb?pool_max_conns=$pool_max_conns" \
        --state-dir="$data/ferretdb" --listen-addr="$mongo_at" --debug-addr=- --telemetry=disable --log-level=error &
      track $! TERM
      echo "started FerretDB (MongoDB wire protocol, PostgreSQL) on $mongo_at"
    else
      mkdir -p "$data/mongo"
      GOGC=${FERRETDB_GOGC:-400} "${detach[@]}" "$ferretdb" --handler=sqlite --sqlite-url="file:$data/mongo/" --state-dir="$data/mongo" \
        --listen-addr="$mongo_at" --debug-addr=- --telemetry=disable --log-level=error &
      track $! TERM
      echo "started FerretDB (MongoDB wire protocol, SQLite) on $mongo_at"
    fi
  fi
fi

for _ in $(seq 1 100); do answers "$redis_at" && answers "$mongo_at" && break; sleep 0.2; done
if [ "${AUTH_MODE:-api-key}" != off ]; then
  # A fresh demo key each run (the token is shown once; `orders keys list` shows the key without it).
  api_key=$(bun src/main.ts keys create --account demo --label run-local | tail -n 1) ||
    { echo "run-local: could not create the demo API key" >&2; exit 1; }
  echo "Demo API key (account demo): $api_key"
  echo "Try: curl -s -X POST http://127.0.0.1:$PORT/orders -H 'authorization: Bearer $api_key'" \
    "-H 'content-type: application/json' -d '{\"type\":\"market\",\"side\":\"buy\",\"instrument\":\"US0378331005\",\"quantity\":1}'"
fi

# The simulated venue, a process of its own (its own session: the service drains against it on Ctrl-C,
# then it stops), so that `orders all` reads its execution feed like a real venue's over a socket.
# Ports: the first free ones from 3001 and 9465, never the service's own PORT or OPS_PORT.
free_port() {
  local port=$1
  while [ "$port" = "$PORT" ] || [ "$port" = "${OPS_PORT:-9464}" ] || [ "$port" = "${2:-}" ] || answers "127.0.0.1:$port"; do
    port=$((port + 1))
  done
  echo "$port"
}
if [ -z "${EXCHANGE_URL:-}" ]; then
  exchange_port=$(free_port "${LOCAL_EXCHANGE_PORT:-3001}")
  exchange_ops_port=$(free_port "${LOCAL_EXCHANGE_OPS_PORT:-9465}" "$exchange_port")
  mkdir -p "$data"
  PORT=$exchange_port OPS_PORT=$exchange_ops_port "${detach[@]}" bun src/main.ts exchange >>"$data/exchange.log" 2>&1 &
  exchange=$!
  track "$exchange" TERM
  for _ in $(seq 1 150); do
    answers "127.0.0.1:$exchange_port" && break
    kill -0 "$exchange" 2>/dev/null || { echo "run-local: the simulated venue exited, see $data/exchange.log" >&2; exit 1; }
    sleep 0.2
  done
  answers "127.0.0.1:$exchange_port" || { echo "run-local: the simulated venue did not start, see $data/exchange.log" >&2; exit 1; }
  export EXCHANGE_URL=http://127.0.0.1:$exchange_port
  echo "started the simulated venue on $EXCHANGE_URL (feed ws://127.0.0.1:$exchange_port/executions," \
    "metrics http://127.0.0.1:$exchange_ops_port/metrics, log $data/exchange.log)"
else
  echo "placing orders at the venue at $EXCHANGE_URL"
fi

echo "API reference: http://127.0.0.1:$PORT/swagger   metrics and health: http://127.0.0.1:${OPS_PORT:-9464}   (Ctrl-C stops everything)"
bun src/main.ts all &
service=$!
track "$service" TERM
wait "$service"
