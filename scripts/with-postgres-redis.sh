#!/usr/bin/env bash
# Run a command against a throw-away PostgreSQL and Redis, the scale-out stack (README, "Scaling out").
# Usage: scripts/with-postgres-redis.sh COMMAND [ARGS...]
# Both servers listen on 127.0.0.1 only, on free ports, with their data in a temp folder; the command sees
# DATABASE_URL=postgres://… (a role allowed to create pytest-django's test_ database) and Q_BROKER=redis://….
# Both are stopped and their data removed when the command ends; its exit code is this script's.
# Needs the Debian packages postgresql and redis-server (scripts/system-deps.sh test installs them).
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL not found under /usr/lib/postgresql (apt-get install postgresql)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

tmp=$(mktemp -d -t pacsportal-scaleout-XXXXXX)
chmod 755 "$tmp"  # the postgres user must reach its folders inside
mkdir -p "$tmp/pg" "$tmp/pg-socket" "$tmp/redis"
# PostgreSQL refuses to run as root: as root, run it as the postgres user the Debian package creates.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$tmp/pg" "$tmp/pg-socket"
  as_pg=(runuser -u postgres --)
fi
redis_pid=""
cleanup() {
  rc=$?
  [ -f "$tmp/pg/data/postmaster.pid" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg/data" -m fast -w stop >/dev/null || true
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_port=$(free_port)
"${as_pg[@]}" "$pg_bin/initdb" -D "$tmp/pg/data" -U postgres -E UTF8 --no-locale --no-sync \
  --auth-local=trust --auth-host=scram-sha-256 >"$tmp/pg/initdb.log"
# fsync off: a throw-away test database, no crash safety wanted; the SQL behaviour is unchanged.
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/server.log" -w -t 60 start \
  -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$tmp/pg-socket -c fsync=off" >/dev/null
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
"${as_pg[@]}" "$pg_bin/psql" -q -v ON_ERROR_STOP=1 -h "$tmp/pg-socket" -p "$pg_port" -U postgres -d postgres \
  -c "CREATE ROLE portal LOGIN CREATEDB PASSWORD '$password'" -c "CREATE DATABASE portal OWNER portal"

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$tmp/redis" --save "" --appendonly no \
  --logfile "$tmp/redis/server.log" &
redis_pid=$!
for _ in $(seq 100); do
  redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
  kill -0 "$redis_pid" 2>/dev/null || { cat "$tmp/redis/server.log" >&2; exit 1; }
  sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$redis_port" ping | grep -q PONG

export DATABASE_URL="postgres://portal:$password@127.0.0.1:$pg_port/portal"
export Q_BROKER="redis://127.0.0.1:$redis_port/0"
echo "with-postgres-redis: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port," \
  "Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-) on 127.0.0.1:$redis_port"
"$@"
