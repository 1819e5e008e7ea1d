#!/usr/bin/env bash
# PgBouncer in transaction pooling mode in front of the test Postgres, for the topology tests (SPEC §12).
#
#   pgbouncer.sh start    start it (one already running is reused), wait until it answers
#   pgbouncer.sh stop     kill it by its pid file
#   pgbouncer.sh status   "running PID" or "stopped"
#
# Listens on 127.0.0.1:${MOTIA_STATE_PGBOUNCER_PORT:-6432}; every database name goes to
# ${MOTIA_STATE_PGBOUNCER_UPSTREAM_HOST:-127.0.0.1}:${MOTIA_STATE_PGBOUNCER_UPSTREAM_PORT:-5432} (trust auth).
# Config, pid and log under /tmp/motia-state-services/pgbouncer-<port>/. PgBouncer refuses to run as root:
# run by root, it runs as the user ${MOTIA_STATE_PGBOUNCER_USER:-postgres}. Users allowed in:
# ${MOTIA_STATE_PGBOUNCER_USERS:-postgres} (space-separated; trust auth, no password).
set -euo pipefail

PORT="${MOTIA_STATE_PGBOUNCER_PORT:-6432}"
UP_HOST="${MOTIA_STATE_PGBOUNCER_UPSTREAM_HOST:-127.0.0.1}"
UP_PORT="${MOTIA_STATE_PGBOUNCER_UPSTREAM_PORT:-5432}"
RUN_AS="${MOTIA_STATE_PGBOUNCER_USER:-postgres}"
ROOT="/tmp/motia-state-services/pgbouncer"
[[ $PORT == 6432 ]] || ROOT="$ROOT-$PORT"
PIDFILE="$ROOT/pgbouncer.pid"

die() { echo "FATAL: pgbouncer[$PORT]: $*" >&2; exit 1; }
log() { echo "pgbouncer[$PORT]: $*" >&2; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

binary() {  # the pgbouncer executable, installing the Debian package when root may
  local found
  found=$(command -v pgbouncer || true)
  [[ -z $found && -x /usr/sbin/pgbouncer ]] && found=/usr/sbin/pgbouncer
  if [[ -z $found ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      log "pgbouncer is not installed; installing the Debian package"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null \
        || die "apt-get install pgbouncer failed"
      # The package may start its own service on 6432 with its own config: ours is the one wanted.
      if command -v systemctl >/dev/null; then systemctl stop pgbouncer 2>/dev/null || true; fi
      found=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
    else
      die "pgbouncer is not installed; install it (Debian/Ubuntu: sudo apt-get install pgbouncer; macOS: brew install pgbouncer)"
    fi
  fi
  [[ -x $found ]] || die "pgbouncer is not installed ($found is missing)"
  echo "$found"
}

pid_of() {  # the live pid from the pid file, or fail
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == pgbouncer* ]] || return 1
  echo "$pid"
}

write_config() {
  mkdir -p "$ROOT"
  # trust auth still wants the user listed (PgBouncer 1.18); Postgres itself trusts local connections.
  local u
  : >"$ROOT/userlist.txt"
  for u in ${MOTIA_STATE_PGBOUNCER_USERS:-postgres}; do echo "\"$u\" \"\"" >>"$ROOT/userlist.txt"; done
  cat >"$ROOT/pgbouncer.ini" <<EOF
[databases]
* = host=$UP_HOST port=$UP_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = trust
auth_file = $ROOT/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
min_pool_size = 0
reserve_pool_size = 5
max_db_connections = 0
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = $ROOT/pgbouncer.log
pidfile = $PIDFILE
admin_users = postgres
stats_users = postgres
EOF
}

start() {
  if pid=$(pid_of); then
    answers || die "pid $pid is running but 127.0.0.1:$PORT does not answer; see $ROOT/pgbouncer.log"
    log "already running (pid $pid)"
    return 0
  fi
  answers && die "127.0.0.1:$PORT is taken by another program; stop it or set MOTIA_STATE_PGBOUNCER_PORT"
  local exe
  exe=$(binary)
  write_config
  rm -f "$PIDFILE"
  local as=()
  if [[ $(id -u) == 0 ]]; then
    id "$RUN_AS" >/dev/null 2>&1 || die "pgbouncer cannot run as root and user $RUN_AS does not exist; set MOTIA_STATE_PGBOUNCER_USER"
    chown -R "$RUN_AS" "$ROOT"
    as=(-u "$RUN_AS")
  fi
  "$exe" -d "${as[@]}" "$ROOT/pgbouncer.ini" || die "did not start; see $ROOT/pgbouncer.log"
  for _ in $(seq 1 50); do
    if answers && pid_of >/dev/null; then
      log "running on 127.0.0.1:$PORT (pid $(pid_of)), pool_mode=transaction -> $UP_HOST:$UP_PORT"
      return 0
    fi
    sleep 0.1
  done
  die "not answering on 127.0.0.1:$PORT after 5 s; see $ROOT/pgbouncer.log"
}

stop() {
  local pid
  if ! pid=$(pid_of); then
    log "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill "$pid"
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { log "stopped"; rm -f "$PIDFILE"; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  log "killed"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if pid=$(pid_of); then echo "running $pid"; else echo "stopped"; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
