#!/usr/bin/env bash
# Private PostgreSQL and Redis for Ferry, each in a folder of its own, on 127.0.0.1 only.
#
#   infra/services.sh start-postgres <state-dir> <port>   prints FERRY_DATABASE_URL=…
#   infra/services.sh start-redis <state-dir> <port>      prints FERRY_REDIS_URL=…
#   infra/services.sh stop <state-dir> [postgres] [redis]  stops them (both when none is named)
#
# Starting is idempotent: an already running service is reused (on the port it runs on).
# PostgreSQL refuses to run as root, so as root it runs as the `postgres` user on folders that
# user owns. The superuser is `ferry`, with a password generated into <state-dir>/postgres/password.
# Both daemons detach: a stopped one may linger as <defunct>, so health is asked of
# `pg_ctl status` and `redis-cli ping`, never of `ps`.
set -euo pipefail

pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -x "$dir/pg_ctl" ] || {
    echo "services.sh: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); run infra/setup.sh." >&2
    exit 1
  }
  echo "$dir"
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local root="$1" port="$2" bin
  bin="$(pg_bin)"
  mkdir -p "$root/postgres" "$root/logs"
  if [ "$(id -u)" = 0 ]; then
    # The postgres user has to reach its folders through the state folder.
    chmod o+x "$root"
    chown postgres: "$root/postgres"
    touch "$root/logs/postgres.log" && chown postgres: "$root/logs/postgres.log"
  fi
  if [ ! -f "$root/postgres/data/PG_VERSION" ]; then
    local password
    password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"
    as_postgres bash -c "umask 077 && echo '$password' > '$root/postgres/password'"
    as_postgres "$bin/initdb" -D "$root/postgres/data" -U ferry --pwfile="$root/postgres/password" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    as_postgres mkdir -p "$root/postgres/run"
  fi
  if ! as_postgres "$bin/pg_ctl" status -D "$root/postgres/data" >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" start -w -t 60 -D "$root/postgres/data" -l "$root/logs/postgres.log" \
      -o "-p $port -k $root/postgres/run -c listen_addresses=127.0.0.1" >/dev/null || {
      echo "services.sh: PostgreSQL did not start on port $port; see $root/logs/postgres.log (is the port taken? set FERRY_POSTGRES_PORT)." >&2
      tail -5 "$root/logs/postgres.log" >&2
      exit 1
    }
  fi
  local password running_port
  password="$(cat "$root/postgres/password")"
  running_port="$(sed -n 4p "$root/postgres/data/postmaster.pid")"
  PGPASSWORD="$password" "$bin/psql" -h 127.0.0.1 -p "$running_port" -U ferry -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = 'ferry'" | grep -q 1 ||
    PGPASSWORD="$password" "$bin/createdb" -h 127.0.0.1 -p "$running_port" -U ferry ferry
  echo "FERRY_DATABASE_URL=postgresql://ferry:$password@127.0.0.1:$running_port/ferry"
}

stop_postgres() {
  local root="$1" bin
  [ -f "$root/postgres/data/PG_VERSION" ] || return 0
  bin="$(pg_bin)"
  if as_postgres "$bin/pg_ctl" status -D "$root/postgres/data" >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" stop -w -t 60 -m fast -D "$root/postgres/data" >/dev/null
  fi
}

start_redis() {
  local root="$1" port="$2"
  mkdir -p "$root/redis" "$root/logs"
  if [ -f "$root/redis/port" ] && redis-cli -p "$(cat "$root/redis/port")" ping 2>/dev/null | grep -q PONG; then
    port="$(cat "$root/redis/port")"
  else
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
      --dir "$root/redis" --pidfile "$root/redis/redis.pid" --logfile "$root/logs/redis.log"
    echo "$port" > "$root/redis/port"
    for _ in $(seq 50); do
      redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
      sleep 0.1
    done
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG || {
      echo "services.sh: Redis did not start on port $port; see $root/logs/redis.log (is the port taken? set FERRY_REDIS_PORT)." >&2
      exit 1
    }
  fi
  echo "FERRY_REDIS_URL=redis://127.0.0.1:$port"
}

stop_redis() {
  local root="$1"
  [ -f "$root/redis/port" ] || return 0
  local port pid
  port="$(cat "$root/redis/port")"
  if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
    pid="$(cat "$root/redis/redis.pid" 2>/dev/null || true)"
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    # Wait for the daemon to be gone so a following start can take the port.
    for _ in $(seq 50); do
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
      [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ] && break
      sleep 0.1
    done
  fi
  rm -f "$root/redis/port"
}

usage="usage: infra/services.sh start-postgres <state-dir> <port> | start-redis <state-dir> <port> | stop <state-dir> [postgres] [redis]"
case "${1:-}" in
  start-postgres)
    [ $# -eq 3 ] || { echo "$usage" >&2; exit 2; }
    start_postgres "$(realpath -m "$2")" "$3"
    ;;
  start-redis)
    [ $# -eq 3 ] || { echo "$usage" >&2; exit 2; }
    start_redis "$(realpath -m "$2")" "$3"
    ;;
  stop)
    [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
    root="$(realpath -m "$2")"
    services=("${@:3}")
    [ ${#services[@]} -gt 0 ] || services=(redis postgres)
    for service in "${services[@]}"; do
      case "$service" in
        redis) stop_redis "$root" ;;
        postgres) stop_postgres "$root" ;;
        *) echo "$usage" >&2; exit 2 ;;
      esac
    done
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
