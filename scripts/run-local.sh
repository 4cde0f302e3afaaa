#!/usr/bin/env bash
# Brings the whole system up on this machine: installs what is missing, starts Redis and a MongoDB-wire
# server when none answers at REDIS_URL / MONGO_URL, then runs `orders all` (API + actors + in-process
# exchange) in the foreground. Ctrl-C stops everything it started. Data lives in .local/ of the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
export PORT=${PORT:-3000}
export MONGO_URL=${MONGO_URL:-mongodb://127.0.0.1:27017/orders}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
data=${LOCAL_DATA_DIR:-$PWD/.local}

command -v bun >/dev/null || npm install -g bun
[ -d node_modules ] || bun install --frozen-lockfile

hostport() { local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; rest=${rest%%\?*}; echo "$rest"; }
answers() { (exec 3<>"/dev/tcp/${1%%:*}/${1##*:}") 2>/dev/null; }

started=()
cleanup() { for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

redis_at=$(hostport "$REDIS_URL"); redis_at=${redis_at/localhost/127.0.0.1}; [[ $redis_at == *:* ]] || redis_at="$redis_at:6379"
if ! answers "$redis_at"; then
  command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
  mkdir -p "$data/redis"
  redis-server --port "${redis_at##*:}" --bind 127.0.0.1 --dir "$data/redis" --appendonly yes --save "" --daemonize no --loglevel warning &
  started+=($!)
  echo "started redis-server on $redis_at (data in $data/redis, AOF on)"
fi

mongo_at=$(hostport "$MONGO_URL"); mongo_at=${mongo_at/localhost/127.0.0.1}; [[ $mongo_at == *:* ]] || mongo_at="$mongo_at:27017"
if ! answers "$mongo_at"; then
  mkdir -p "$data/mongo"
  if command -v mongod >/dev/null; then
    mongod --port "${mongo_at##*:}" --bind_ip 127.0.0.1 --dbpath "$data/mongo" --quiet &
    started+=($!)
    echo "started mongod on $mongo_at"
  else
    ferretdb=$(bash scripts/install-ferretdb.sh)
    "$ferretdb" --handler=sqlite --sqlite-url="file:$data/mongo/" --state-dir="$data/mongo" \
      --listen-addr="$mongo_at" --debug-addr=- --telemetry=disable --log-level=error &
    started+=($!)
    echo "started FerretDB (MongoDB wire protocol, SQLite) on $mongo_at"
  fi
fi

for _ in $(seq 1 100); do answers "$redis_at" && answers "$mongo_at" && break; sleep 0.2; done
echo "Swagger UI: http://127.0.0.1:$PORT/swagger   (Ctrl-C stops everything)"
bun src/main.ts all &
service=$!
started+=("$service")
wait "$service"
