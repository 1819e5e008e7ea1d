#!/usr/bin/env bash
# A TLS-only Redis with ACL users for the topology tests (SPEC §12 "Redis with TLS and ACL users").
#
#   redis_tls.sh start    make a CA, a server certificate (SAN IP:127.0.0.1, DNS:localhost), a client certificate
#                         and a second, unrelated CA; start redis-server --port 0 --tls-port PORT; wait for PING.
#                         A running one (same directory, answering) is reused.
#   redis_tls.sh stop     kill it by its pid file, remove the directory
#
# Port ${MOTIA_STATE_TLS_PORT:-6390}; everything under /tmp/motia-state-services/redis-tls/ (redis-tls-<port>/ for
# another port: ca.crt, other-ca.crt,
# client.crt/client.key, users.acl, redis.log). Clients may present a certificate signed by ca.crt
# (--tls-auth-clients optional); one signed by anything else is refused.
#
# ACL users (fixed test-only passwords; the ACL file holds only their SHA-256):
#   default        admin (everything, FLUSHDB for the test factory)               password motia-tls-admin
#   motia          the docs' simple grant: keys motia:state:*, +@all -@dangerous  password motia-tls-pw
#   motia-minimal  keys motia:state:*, only the commands listed in
#                  docs/topologies.md (MINIMAL_COMMANDS below)              password motia-tls-minimal
#   motia-limited  like motia, minus EVAL/EVALSHA (to test the error)             password motia-tls-limited
# Nothing secret is printed.
set -euo pipefail

PORT="${MOTIA_STATE_TLS_PORT:-6390}"
DIR="/tmp/motia-state-services/redis-tls"
[[ $PORT == 6390 ]] || DIR="$DIR-$PORT"
HOST=127.0.0.1
ADMIN_PW=motia-tls-admin
MOTIA_PW=motia-tls-pw
LIMITED_PW=motia-tls-limited
MINIMAL_PW=motia-tls-minimal
# Every command motia-state sends, and every command its Lua scripts call (ACL checks those too).
# Keep in step with docs/topologies.md; tests/topologies/test_redis_tls.py runs every operation as this user.
MINIMAL_COMMANDS="ping evalsha script|load time \
get mget set getdel del exists pttl pexpiretime scan \
sadd srem smembers sscan \
hset hget hmget hgetall hdel hincrby hkeys \
zadd zrem zscore zmscore zcard zcount zrange zrangebyscore zremrangebyscore \
incr xadd xdel xrange xrevrange xread"

log() { echo "redis-tls[$PORT]: $*" >&2; }
die() { echo "FATAL: redis-tls[$PORT]: $*" >&2; exit 1; }

command -v redis-server >/dev/null || die "redis-server is not installed"
command -v openssl >/dev/null || die "openssl is not installed"

pid_of() {
  local pid
  [[ -f $DIR/redis.pid ]] || return 1
  pid=$(<"$DIR/redis.pid")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
  # killed but not yet reaped (a zombie) is not running
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  echo "$pid"
}

ping() {  # as the admin user over TLS; the password goes through the environment, not argv
  REDISCLI_AUTH="$ADMIN_PW" timeout 5 redis-cli --tls --cacert "$DIR/ca.crt" -h "$HOST" -p "$PORT" \
    --no-auth-warning PING 2>/dev/null
}

sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

make_certs() {
  local days=30 ossl=(openssl)
  cd "$DIR"
  "${ossl[@]}" req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days "$days" \
    -subj "/CN=motia-state test CA" -keyout ca.key -out ca.crt 2>/dev/null
  "${ossl[@]}" req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
  "${ossl[@]}" x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile server.ext -out server.crt 2>/dev/null
  "${ossl[@]}" req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -subj "/CN=motia-state test client" -keyout client.key -out client.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  "${ossl[@]}" x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile client.ext -out client.crt 2>/dev/null
  # An unrelated CA (a "wrong CA" for the tests) and a client certificate it signed.
  "${ossl[@]}" req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days "$days" \
    -subj "/CN=some other CA" -keyout other-ca.key -out other-ca.crt 2>/dev/null
  "${ossl[@]}" req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -subj "/CN=stranger" -keyout stranger.key -out stranger.csr 2>/dev/null
  "${ossl[@]}" x509 -req -in stranger.csr -CA other-ca.crt -CAkey other-ca.key -CAcreateserial -days "$days" \
    -extfile client.ext -out stranger.crt 2>/dev/null
  rm -f ./*.csr ./*.ext ./*.srl
  chmod 600 ./*.key
  cd - >/dev/null
}

start() {
  local started=$SECONDS
  if pid_of >/dev/null && [[ $(ping) == PONG ]]; then
    log "already running on $HOST:$PORT (TLS); reusing it"
    return 0
  fi
  stop_it
  if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
    die "port $PORT is taken by another process; set MOTIA_STATE_TLS_PORT"
  fi
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  make_certs || die "openssl could not make the test certificates"
  umask 077
  {
    echo "user default on #$(sha "$ADMIN_PW") ~* &* +@all"
    echo "user motia on #$(sha "$MOTIA_PW") ~motia:state:* resetchannels +@all -@dangerous"
    echo "user motia-minimal on #$(sha "$MINIMAL_PW") ~motia:state:* resetchannels -@all $(printf '+%s ' $MINIMAL_COMMANDS)"
    echo "user motia-limited on #$(sha "$LIMITED_PW") ~motia:state:* resetchannels +@all -@dangerous -eval -evalsha"
  } >"$DIR/users.acl"
  redis-server \
    --port 0 --tls-port "$PORT" --bind "$HOST" \
    --tls-cert-file "$DIR/server.crt" --tls-key-file "$DIR/server.key" --tls-ca-cert-file "$DIR/ca.crt" \
    --tls-auth-clients optional \
    --aclfile "$DIR/users.acl" \
    --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --dir "$DIR" \
    --save "" --appendonly no \
    >"$DIR/start.out" 2>&1 || {
    cat "$DIR/start.out" >&2
    grep -qi 'tls' "$DIR/start.out" "$DIR/redis.log" 2>/dev/null \
      && die "redis-server refused the TLS options: it was probably built without TLS (BUILD_TLS=yes)"
    die "redis-server did not start; see $DIR/redis.log"
  }
  for i in $(seq 1 100); do
    if ((i > 10)) && ! pid_of >/dev/null; then
      tail -5 "$DIR/redis.log" >&2 || true
      die "redis-server exited at start; see $DIR/redis.log"
    fi
    if [[ $(ping) == PONG ]]; then
      log "started on $HOST:$PORT (TLS only, ACL users default/motia/motia-minimal/motia-limited) in $((SECONDS - started)) s"
      return 0
    fi
    sleep 0.1
  done
  tail -20 "$DIR/redis.log" >&2 || true
  die "no PONG over TLS within 10 s; see $DIR/redis.log"
}

stop_it() {
  local pid
  if pid=$(pid_of); then
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop_it; log "stopped" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
