#!/usr/bin/env bash
# A 3-master + 3-replica Redis Cluster on 127.0.0.1 for the topology tests (SPEC §12).
#
#   redis_cluster.sh start               start it (a healthy running cluster is reused), wait for cluster_state:ok
#   redis_cluster.sh stop                kill every node by its pid file, remove the data directory
#   redis_cluster.sh restart-node PORT   start again a node that was killed (it rejoins with its nodes.conf, as a
#                                        replica if its replica was promoted meanwhile), wait for cluster_state:ok
#   redis_cluster.sh pids                "PORT PID" per running node
#   redis_cluster.sh status              CLUSTER NODES of the first answering node
#
# Ports ${MOTIA_STATE_CLUSTER_PORT:-7000}..+5; everything under /tmp/motia-state-services/redis-cluster-<port>/.
# No persistence (a restarted node resyncs from its master); cluster-node-timeout 2000 ms, so a master's
# failover completes in a few seconds. Works run by root.
set -euo pipefail

BASE_PORT="${MOTIA_STATE_CLUSTER_PORT:-7000}"
NODE_TIMEOUT_MS="${MOTIA_STATE_CLUSTER_NODE_TIMEOUT:-2000}"
ROOT="/tmp/motia-state-services/redis-cluster-${BASE_PORT}"
HOST=127.0.0.1
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((BASE_PORT + i))); done

log() { echo "redis-cluster[$BASE_PORT]: $*" >&2; }
die() { echo "FATAL: redis-cluster[$BASE_PORT]: $*" >&2; exit 1; }

command -v redis-server >/dev/null || die "redis-server is not installed"
command -v redis-cli >/dev/null || die "redis-cli is not installed"

cli() { local port=$1; shift; timeout 5 redis-cli -h "$HOST" -p "$port" "$@" 2>/dev/null; }

pid_of() {  # the live pid of the node on port $1, or nothing
  local f="$ROOT/$1/redis.pid" pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # a recycled pid must be a redis-server
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
  # killed but not yet reaped (a zombie) is not running
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  echo "$pid"
}

start_node() {  # port
  local port=$1 dir="$ROOT/$1"
  mkdir -p "$dir"
  rm -f "$dir/redis.pid"
  redis-server \
    --port "$port" --bind "$HOST" --protected-mode no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
    --save "" --appendonly no --repl-diskless-sync-delay 0 \
    --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
    --cluster-node-timeout "$NODE_TIMEOUT_MS" \
    || die "redis-server on port $port did not start; see $dir/redis.log"
}

wait_answers() {  # port [seconds]
  local port=$1 deadline=$((SECONDS + ${2:-10}))
  until [[ $(cli "$port" PING) == PONG ]]; do
    ((SECONDS < deadline)) || die "node $port does not answer PING; see $ROOT/$port/redis.log"
    sleep 0.1
  done
}

node_ok() {  # port: cluster_state ok, every slot served, six nodes known
  local info
  info=$(cli "$1" CLUSTER INFO | tr -d '\r') || return 1
  grep -qx 'cluster_state:ok' <<<"$info" && grep -qx 'cluster_slots_ok:16384' <<<"$info" \
    && grep -qx 'cluster_known_nodes:6' <<<"$info"
}

healthy() {  # every node running, every node says ok, three masters each with one replica
  local port masters
  for port in "${PORTS[@]}"; do
    pid_of "$port" >/dev/null || return 1
    node_ok "$port" || return 1
  done
  masters=$(cli "${PORTS[0]}" CLUSTER NODES | awk '$3 ~ /(^|,)master(,|$)/ && $3 !~ /fail/ && NF > 8' | wc -l)
  [[ $masters == 3 ]] || return 1
  # every master has a connected replica (no node still syncing)
  for port in "${PORTS[@]}"; do
    if cli "$port" ROLE | head -1 | grep -qx master; then
      [[ $(cli "$port" INFO replication | tr -d '\r' | grep -c '^slave[0-9]*:.*state=online') -ge 1 ]] || return 1
    fi
  done
}

wait_healthy() {  # seconds
  local deadline=$((SECONDS + $1))
  until healthy; do
    if ((SECONDS >= deadline)); then
      for port in "${PORTS[@]}"; do
        log "node $port: pid=$(pid_of "$port" || echo none) $(cli "$port" CLUSTER INFO | tr -d '\r' | grep -E '^cluster_(state|slots_ok|known_nodes)' | tr '\n' ' ')"
      done
      return 1
    fi
    sleep 0.2
  done
}

have_configs() {  # every node has its cluster config file from an earlier start
  local port
  for port in "${PORTS[@]}"; do [[ -s $ROOT/$port/nodes.conf ]] || return 1; done
}

stop_all() {
  local port pid
  for port in "${PORTS[@]}"; do
    if pid=$(pid_of "$port"); then kill -9 "$pid" 2>/dev/null || true; fi
  done
  for port in "${PORTS[@]}"; do
    if pid=$(pid_of "$port"); then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  rm -rf "$ROOT"
}

create() {
  local port started=$SECONDS
  stop_all
  for port in "${PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
      die "port $port is taken by another process (not this script's cluster); set MOTIA_STATE_CLUSTER_PORT"
    fi
  done
  mkdir -p "$ROOT"
  for port in "${PORTS[@]}"; do start_node "$port"; done
  for port in "${PORTS[@]}"; do wait_answers "$port"; done
  local nodes=()
  for port in "${PORTS[@]}"; do nodes+=("$HOST:$port"); done
  if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$ROOT/create.log" 2>&1; then
    cat "$ROOT/create.log" >&2
    die "redis-cli --cluster create failed"
  fi
  wait_healthy 60 || die "the cluster did not reach cluster_state:ok on all nodes within 60 s; logs in $ROOT/*/redis.log"
  log "started on $HOST:${PORTS[0]}..${PORTS[5]} in $((SECONDS - started)) s"
}

case "${1:-}" in
  start)
    if healthy; then
      log "already running and healthy on $HOST:${PORTS[0]}..${PORTS[5]}; reusing it"
      exit 0
    fi
    # Some nodes down but the cluster's files are there (e.g. a failover test died before restarting its
    # node): start the missing nodes again; if that does not make it whole, build a new cluster.
    if have_configs; then
      for port in "${PORTS[@]}"; do
        pid_of "$port" >/dev/null || { log "node $port is down; restarting it"; start_node "$port"; }
      done
      if wait_healthy 20; then
        log "running again on $HOST:${PORTS[0]}..${PORTS[5]}"
        exit 0
      fi
      log "the existing cluster is not healthy; creating a new one"
    fi
    create
    ;;
  stop)
    stop_all
    log "stopped"
    ;;
  restart-node)
    port="${2:-}"
    [[ " ${PORTS[*]} " == *" $port "* ]] || die "restart-node needs one of the ports ${PORTS[*]}, got '${port}'"
    [[ -s $ROOT/$port/nodes.conf ]] || die "node $port has no nodes.conf under $ROOT; run '$0 start'"
    if pid_of "$port" >/dev/null; then
      log "node $port is running"
    else
      start_node "$port"
      wait_answers "$port"
    fi
    wait_healthy 60 || die "node $port restarted but the cluster is not whole (cluster_state:ok everywhere) within 60 s"
    log "node $port is back; cluster ok"
    ;;
  pids)
    for port in "${PORTS[@]}"; do
      if pid=$(pid_of "$port"); then echo "$port $pid"; fi
    done
    ;;
  status)
    for port in "${PORTS[@]}"; do
      if out=$(cli "$port" CLUSTER NODES); then echo "$out"; exit 0; fi
    done
    die "no node answers"
    ;;
  *)
    echo "usage: $0 start|stop|restart-node PORT|pids|status" >&2
    exit 2
    ;;
esac
