#!/usr/bin/env bash
# Real Redis, PostgreSQL, RabbitMQ and pure-ftpd (FTPS) for the integration tests (and the mosquitto binary, which the MQTT
# tests start themselves, and Debian's Chromium for the browser tests), on free loopback ports with throwaway
# data directories. Installs what is missing from Debian's packages. Never skips: if a server
# cannot start, it says why (with the server's log) and exits non-zero.
#
#   servers.sh start ENV_FILE          start them all, write ENV_FILE (KEY=value lines, see below)
#   servers.sh stop  ENV_FILE          stop what ENV_FILE names and remove its directories
#   servers.sh rabbitmq-stop  ENV_FILE stop the RabbitMQ node of ENV_FILE, keeping its data
#   servers.sh rabbitmq-start ENV_FILE start that same node again (queues and persistent messages kept)
#   servers.sh prosody-stop  ENV_FILE  stop the Prosody of ENV_FILE, keeping its data (users, offline messages)
#   servers.sh prosody-start ENV_FILE  start that same Prosody again on the same ports
#   servers.sh postgres-stop  ENV_FILE stop the PostgreSQL of ENV_FILE (fast shutdown: sessions cut), keeping its data
#   servers.sh postgres-start ENV_FILE start that same server again on the same port and data
#   servers.sh redis-stop  ENV_FILE    stop the Redis of ENV_FILE
#   servers.sh redis-start ENV_FILE    start a Redis again on the same port and dir (empty: it saves nothing)
#
# ENV_FILE: CONFLUX_TEST_POSTGRES_URL, CONFLUX_TEST_REDIS_URL, CONFLUX_TEST_AMQP_URL,
# CONFLUX_TEST_POSTGRES_PID, CONFLUX_TEST_REDIS_PID, CONFLUX_TEST_POSTGRES_DIR,
# CONFLUX_TEST_REDIS_DIR, CONFLUX_TEST_RABBITMQ_DIR, CONFLUX_TEST_RABBITMQ_PORT,
# CONFLUX_TEST_RABBITMQ_DIST_PORT, CONFLUX_TEST_RABBITMQ_EPMD_PORT, CONFLUX_TEST_SERVERS_DIR,
# CONFLUX_TEST_PG_BIN, CONFLUX_TEST_FTP_URL (pure-ftpd, explicit TLS required: ftp://user:password@127.0.0.1:port),
# CONFLUX_TEST_FTP_ROOT (the user's files), CONFLUX_TEST_FTP_CA (the test CA's PEM), CONFLUX_TEST_FTP_PID,
# CONFLUX_TEST_PROSODY_DIR, CONFLUX_TEST_PROSODY_PORT (plain, STARTTLS offered),
# CONFLUX_TEST_PROSODY_TLS_PORT (direct TLS), CONFLUX_TEST_PROSODY_DOMAIN, CONFLUX_TEST_PROSODY_CA
# (the test CA that signed its certificate), CONFLUX_TEST_PROSODY_PID.
set -euo pipefail

die() { echo "servers.sh: $*" >&2; exit 1; }
log() { echo "servers.sh: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo -n "$@"
  else die "need root to run: $*"; fi
}

updated=0
# apt-get install, with one `apt-get update` if a package is not found (fresh images have no lists).
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  log "installing $*"
  if ! as_root apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; then
    [ "$updated" = 1 ] || { as_root apt-get update -q >/dev/null 2>&1 || true; updated=1; }
    as_root apt-get install -y -q --no-install-recommends "$@" >/dev/null \
      || die "apt-get install $* failed"
  fi
}

pg_bin() {
  local d
  for d in "${CONFLUX_TEST_PG_BIN:-}" /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

# A port the kernel just handed out and released: free unless someone races us for it. Never one
# of 35672-35682, where every rabbitmqctl on the machine runs its own Erlang distribution.
free_port() {
  local p
  while :; do
    p=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
    { [ "$p" -ge 35672 ] && [ "$p" -le 35682 ]; } || { echo "$p"; return 0; }
  done
}

# PostgreSQL refuses to run as root: run its tools as user postgres when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_redis() { # dir [port]: a given port is a restart (redis-start); no data is saved, so it starts empty
  local dir=$1 port=${2:-} i
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server
  mkdir -p "$dir"
  [ -n "$port" ] || port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --save '' --appendonly no \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    || die "redis-server did not start: $(tail -n 20 "$dir/redis.log" 2>/dev/null)"
  for i in $(seq 1 100); do
    [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
    [ "$i" = 100 ] && die "redis-server on port $port not ready after 10 s: $(tail -n 20 "$dir/redis.log" 2>/dev/null)"
    sleep 0.1
  done
  REDIS_PORT=$port
  REDIS_PID=$(cat "$dir/redis.pid")
}

# The Redis of an env file (its pid file is current after a redis-start; the env file's pid is the first one).
redis_pid() {
  cat "$CONFLUX_TEST_REDIS_DIR/redis.pid" 2>/dev/null || echo "${CONFLUX_TEST_REDIS_PID:-}"
}

redis_stop() { # returns once the process has exited (a clean shutdown removes its pid file)
  local pid i
  pid=$(redis_pid)
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; [ "$i" = 100 ] && kill -9 "$pid" 2>/dev/null; sleep 0.1; done
  rm -f "$CONFLUX_TEST_REDIS_DIR/redis.pid"
}

start_postgres() {
  local dir=$1 bin port
  bin=$(pg_bin) || { apt_install postgresql-15; bin=$(pg_bin) || die "no initdb after installing postgresql-15"; }
  if [ "$(id -u)" = 0 ]; then id postgres >/dev/null 2>&1 || die "user postgres missing (install postgresql-15)"; fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"
  as_pg "$bin/initdb" -D "$dir" -A trust -U postgres --no-sync -E UTF8 --locale=C >"$dir.initdb.log" 2>&1 \
    || die "initdb failed: $(tail -n 20 "$dir.initdb.log")"
  port=$(free_port)
  # The log lives inside the data dir: the one place user postgres can surely write.
  # Tests trade durability for speed; CONFLUX_TEST_PG_DURABLE=1 (benchmarks) keeps PostgreSQL's
  # defaults, each commit flushed to disk, as a production server runs.
  local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${CONFLUX_TEST_PG_DURABLE:-}" = 1 ] && durability=""
  # Kept beside the data dir for postgres-start, which starts the same server again.
  echo "-c listen_addresses=127.0.0.1 -p $port -k $dir $durability -c max_connections=200" >"$dir.options"
  pg_launch "$bin" "$dir" "$port"
  PG_PORT=$port
  PG_PID=$(head -n 1 "$dir/postmaster.pid")
  PG_BIN=$bin
}

pg_launch() { # bin dir port: starts the server of dir with the options start_postgres kept; returns once it accepts connections
  local bin=$1 dir=$2 port=$3
  as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 30 start -o "$(cat "$dir.options")" \
    >/dev/null || die "PostgreSQL did not start on port $port: $(tail -n 20 "$dir/server.log" 2>/dev/null)"
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 10 || die "PostgreSQL on port $port not ready: $(tail -n 20 "$dir/server.log")"
}

# The port of the env file's PostgreSQL, from its URL (postgres://postgres@127.0.0.1:PORT/postgres).
pg_port() {
  local rest=${CONFLUX_TEST_POSTGRES_URL##*:}
  echo "${rest%%/*}"
}

# ---- RabbitMQ ------------------------------------------------------------------------------
# One node per run, all its state in the throwaway dir: its own node name (rabbit-<port>, so
# parallel runs never meet), AMQP port, distribution port and epmd (ERL_EPMD_PORT: `epmd -kill`
# at the end touches only ours), loopback only. HOME is its dir, so the Erlang cookie the node
# and rabbitmqctl share is ours too. The AMQP listener is set in the config file only: the
# RABBITMQ_NODE_PORT variable also reaches rabbitmqctl, whose node then cannot start.
RABBIT_BIN=/usr/lib/rabbitmq/bin

rabbit_env() { # dir port dist_port epmd_port
  export HOME=$1
  export RABBITMQ_NODENAME="rabbit-$2@localhost"
  export RABBITMQ_DIST_PORT=$3
  export ERL_EPMD_PORT=$4 ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE=$1/mnesia RABBITMQ_LOG_BASE=$1/log
  export RABBITMQ_CONFIG_FILE=$1/rabbitmq.conf RABBITMQ_ADVANCED_CONFIG_FILE=$1/advanced.config
  export RABBITMQ_ENABLED_PLUGINS_FILE=$1/enabled_plugins RABBITMQ_CONF_ENV_FILE=$1/rabbitmq-env.conf
  export RABBITMQ_PID_FILE=$1/rabbit.pid
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

# Launches the node and returns at once (it takes about 6 s: the other servers start meanwhile).
rabbit_launch() { # dir port dist_port epmd_port
  local dir=$1
  ( rabbit_env "$@"; cd "$dir"; exec setsid "$RABBIT_BIN/rabbitmq-server" </dev/null >>"$dir/log/stdout" 2>&1 ) &
}

# Waits for the node launched above: its port open, then `rabbitmqctl await_startup`.
rabbit_wait() { # dir port dist_port epmd_port
  local dir=$1 port=$2 i
  for i in $(seq 1 600); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    [ "$i" = 600 ] && die "RabbitMQ on port $port not listening after 60 s: $(tail -n 30 "$dir/log/stdout" 2>/dev/null) $(grep -h '\[error\]' "$dir"/log/*.log 2>/dev/null | head -n 5)"
    sleep 0.1
  done
  ( rabbit_env "$@"; "$RABBIT_BIN/rabbitmqctl" -q await_startup --timeout 60 >/dev/null ) \
    || die "RabbitMQ on port $port did not finish starting: $(tail -n 30 "$dir/log/stdout" 2>/dev/null)"
  # The node started this way writes no pid file; `rabbitmqctl stop PIDFILE` needs one to wait on.
  ( rabbit_env "$@"; "$RABBIT_BIN/rabbitmqctl" -q eval 'list_to_integer(os:getpid()).' ) >"$dir/rabbit.pid.new" \
    && mv "$dir/rabbit.pid.new" "$dir/rabbit.pid" || die "cannot read the pid of RabbitMQ on port $port"
}

rabbit_stop() { # dir port dist_port epmd_port
  local dir=$1 pid i
  pid=$(cat "$dir/rabbit.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  ( rabbit_env "$@"; timeout 60 "$RABBIT_BIN/rabbitmqctl" -q stop >/dev/null 2>&1 ) || kill "$pid" 2>/dev/null || true
  # Returns once the Erlang VM has exited: its port, node name and data are free for a restart.
  for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; [ "$i" = 300 ] && kill -9 "$pid"; sleep 0.1; done
  rm -f "$dir/rabbit.pid"
}

start_rabbitmq() { # dir: launches; rabbit_wait finishes
  local dir=$1
  [ -x "$RABBIT_BIN/rabbitmq-server" ] && [ -x "$RABBIT_BIN/rabbitmqctl" ] || apt_install rabbitmq-server
  [ -x "$RABBIT_BIN/rabbitmq-server" ] || die "no $RABBIT_BIN/rabbitmq-server after installing rabbitmq-server"
  mkdir -p "$dir/mnesia" "$dir/log"
  RABBIT_PORT=$(free_port)
  RABBIT_DIST_PORT=$(free_port)
  RABBIT_EPMD_PORT=$(free_port)
  # guest/guest from loopback only (the default); no plugins; our listener only.
  printf 'listeners.tcp.1 = 127.0.0.1:%s\nloopback_users.guest = true\n' "$RABBIT_PORT" >"$dir/rabbitmq.conf"
  echo '[].' >"$dir/enabled_plugins"
  : >"$dir/rabbitmq-env.conf"
  rabbit_launch "$dir" "$RABBIT_PORT" "$RABBIT_DIST_PORT" "$RABBIT_EPMD_PORT"
}

# The node of an env file, for rabbitmq-stop / rabbitmq-start / stop.
rabbit_args() {
  echo "$CONFLUX_TEST_RABBITMQ_DIR" "$CONFLUX_TEST_RABBITMQ_PORT" "$CONFLUX_TEST_RABBITMQ_DIST_PORT" "$CONFLUX_TEST_RABBITMQ_EPMD_PORT"
}

# ---- FTP over TLS (pure-ftpd) ------------------------------------------------------------------
# pure-ftpd with one virtual user (its puredb in the throwaway dir, files owned by nobody), explicit
# TLS required on the control and the data connections (-Y 3), with a server certificate signed by
# a test CA made here (ca.pem: what a client must trust), passive ports below the ephemeral range.
start_ftp() {
  local dir=$1 i
  command -v pure-ftpd >/dev/null && command -v pure-pw >/dev/null || apt_install pure-ftpd
  command -v pure-ftpd >/dev/null || die "no pure-ftpd after installing it"
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$dir/home"
  chmod 755 "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 7 -subj "/CN=Conflux test CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 7 -extfile ext.cnf 2>/dev/null
  ) || die "cannot make the FTP test certificates"
  chown nobody:nogroup "$dir/home"
  FTP_USER=conflux
  FTP_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s\n%s\n' "$FTP_PASSWORD" "$FTP_PASSWORD" | pure-pw useradd "$FTP_USER" -u nobody -g nogroup -d "$dir/home" -f "$dir/passwd" >/dev/null \
    || die "pure-pw useradd failed"
  pure-pw mkdb "$dir/pureftpd.pdb" -f "$dir/passwd" || die "pure-pw mkdb failed"
  FTP_PORT=$(free_port)
  local pasv=$(( 20000 + (RANDOM % 200) * 50 ))
  pure-ftpd -S "127.0.0.1,$FTP_PORT" -l "puredb:$dir/pureftpd.pdb" -E -H -A -Y 3 -2 "$dir/server.pem,$dir/server.key" \
    -p "$pasv:$(( pasv + 49 ))" -g "$dir/pure-ftpd.pid" -B >"$dir/start.log" 2>&1 || die "pure-ftpd did not start: $(cat "$dir/start.log")"
  for i in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$FTP_PORT") 2>/dev/null && break
    [ "$i" = 100 ] && die "pure-ftpd on port $FTP_PORT not listening after 10 s: $(cat "$dir/start.log")"
    sleep 0.1
  done
  FTP_PID=$(cat "$dir/pure-ftpd.pid")
}

# ---- Prosody (XMPP) -------------------------------------------------------------------------
# One Prosody per run, everything in its throwaway dir (config, data, pid, logs, admin socket), on
# loopback: a plain c2s port (STARTTLS offered, not required) and a direct-TLS port, both with a
# certificate for "localhost" signed by a test CA of its own (the tests trust that CA, never the
# system's). No s2s, no HTTP, no mod_limits (it would throttle the benchmark). Stream management
# (mod_smacks) and offline storage are on, as a production server has them. Users alice, bob,
# carol with password "secret" (the tests' two proxies, a third peer). Run as root, prosodyctl
# drops to user prosody: its dirs belong to it.
PROSODY_USERS="alice bob carol"
PROSODY_PASSWORD=secret

prosody_ctl() { # dir args...
  local dir=$1; shift
  prosodyctl --config "$dir/prosody.cfg.lua" "$@" >>"$dir/prosodyctl.log" 2>&1
}

prosody_launch() { # dir port tls_port: starts it and waits until its plain port accepts
  local dir=$1 port=$2 i
  prosody_ctl "$dir" start || die "Prosody did not start: $(tail -n 20 "$dir/prosody.err" "$dir/prosodyctl.log" 2>/dev/null)"
  for i in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && (echo >"/dev/tcp/127.0.0.1/$3") 2>/dev/null && return 0
    sleep 0.1
  done
  die "Prosody on port $port not listening after 10 s: $(tail -n 20 "$dir/prosody.err" "$dir/prosody.log" 2>/dev/null)"
}

prosody_stop() { # dir: returns once the process has exited
  local dir=$1 pid i
  pid=$(cat "$dir/prosody.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  prosody_ctl "$dir" stop || kill "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; [ "$i" = 100 ] && kill -9 "$pid" 2>/dev/null; sleep 0.1; done
  rm -f "$dir/prosody.pid"
}

start_prosody() { # dir
  local dir=$1 u
  command -v prosodyctl >/dev/null || apt_install prosody lua-unbound
  command -v prosodyctl >/dev/null || die "no prosodyctl after installing prosody"
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$dir/data" "$dir/certs"
  PROSODY_PORT=$(free_port)
  PROSODY_TLS_PORT=$(free_port)
  ( cd "$dir/certs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Conflux test CA" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout localhost.key -out localhost.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >ext.cnf
    openssl x509 -req -in localhost.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out localhost.crt 2>/dev/null
  ) || die "cannot make the Prosody test certificates"
  cat >"$dir/prosody.cfg.lua" <<EOF
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
daemonize = true
interfaces = { "127.0.0.1" }
c2s_ports = { $PROSODY_PORT }
c2s_direct_tls_ports = { $PROSODY_TLS_PORT }
s2s_ports = { }
http_ports = { }
https_ports = { }
admin_socket = "$dir/prosody.sock"
plugin_paths = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "smacks"; "offline"; "posix" }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
log = { info = "$dir/prosody.log"; error = "$dir/prosody.err" }
ssl = { certificate = "$dir/certs/localhost.crt"; key = "$dir/certs/localhost.key" }
c2s_direct_tls_ssl = { certificate = "$dir/certs/localhost.crt"; key = "$dir/certs/localhost.key" }
VirtualHost "localhost"
  ssl = { certificate = "$dir/certs/localhost.crt"; key = "$dir/certs/localhost.key" }
EOF
  [ "$(id -u)" = 0 ] && chown -R prosody: "$dir"
  chmod 755 "$dir"
  for u in $PROSODY_USERS; do
    prosody_ctl "$dir" register "$u" localhost "$PROSODY_PASSWORD" || die "prosodyctl register $u failed: $(tail -n 5 "$dir/prosodyctl.log")"
  done
  prosody_launch "$dir" "$PROSODY_PORT" "$PROSODY_TLS_PORT"
  PROSODY_PID=$(cat "$dir/prosody.pid")
}

stop_all() {
  local env=$1
  [ -f "$env" ] || { log "no env file $env: nothing to stop"; return 0; }
  # shellcheck disable=SC1090
  . "$env"
  if [ -n "${CONFLUX_TEST_POSTGRES_DIR:-}" ] && [ -f "$CONFLUX_TEST_POSTGRES_DIR/postmaster.pid" ]; then
    as_pg "$CONFLUX_TEST_PG_BIN/pg_ctl" -D "$CONFLUX_TEST_POSTGRES_DIR" -m immediate -w stop >/dev/null 2>&1 \
      || kill "${CONFLUX_TEST_POSTGRES_PID:-}" 2>/dev/null || true
  fi
  if [ -n "${CONFLUX_TEST_RABBITMQ_DIR:-}" ] && [ -d "$CONFLUX_TEST_RABBITMQ_DIR" ]; then
    # shellcheck disable=SC2046
    rabbit_stop $(rabbit_args)
    ( rabbit_env $(rabbit_args); epmd -kill >/dev/null 2>&1 ) || true
  fi
  if [ -n "${CONFLUX_TEST_FTP_PID:-}" ]; then
    kill "$CONFLUX_TEST_FTP_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$CONFLUX_TEST_FTP_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -n "${CONFLUX_TEST_PROSODY_DIR:-}" ] && [ -d "$CONFLUX_TEST_PROSODY_DIR" ]; then
    prosody_stop "$CONFLUX_TEST_PROSODY_DIR"
  fi
  if [ -n "${CONFLUX_TEST_REDIS_DIR:-}" ]; then
    redis_stop
  fi
  [ -n "${CONFLUX_TEST_SERVERS_DIR:-}" ] && rm -rf "$CONFLUX_TEST_SERVERS_DIR"
  rm -f "$env"
}

cmd=${1:-}
env_file=${2:-}
[ -n "$env_file" ] || die "usage: servers.sh start|stop|{rabbitmq,prosody,postgres,redis}-{stop,start} ENV_FILE"
case "$cmd" in
  start)
    base=$(mktemp -d "${TMPDIR:-/tmp}/conflux-servers.XXXXXX")
    chmod 755 "$base" # user postgres must reach its data dir inside
    # Write the env file as we go, so a failed start still leaves enough for `stop` to clean up.
    echo "CONFLUX_TEST_SERVERS_DIR=$base" >"$env_file"
    trap 'rc=$?; [ "$rc" = 0 ] || { stop_all "$env_file"; exit "$rc"; }' EXIT
    t0=$(date +%s%N)
    # RabbitMQ is the slowest to start: launched first, waited for last.
    start_rabbitmq "$base/rabbitmq"
    {
      echo "CONFLUX_TEST_RABBITMQ_DIR=$base/rabbitmq"
      echo "CONFLUX_TEST_RABBITMQ_PORT=$RABBIT_PORT"
      echo "CONFLUX_TEST_RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT"
      echo "CONFLUX_TEST_RABBITMQ_EPMD_PORT=$RABBIT_EPMD_PORT"
    } >>"$env_file"
    start_postgres "$base/postgres"
    {
      echo "CONFLUX_TEST_PG_BIN=$PG_BIN"
      echo "CONFLUX_TEST_POSTGRES_DIR=$base/postgres"
      echo "CONFLUX_TEST_POSTGRES_PID=$PG_PID"
      echo "CONFLUX_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    } >>"$env_file"
    start_redis "$base/redis"
    {
      echo "CONFLUX_TEST_REDIS_DIR=$base/redis"
      echo "CONFLUX_TEST_REDIS_PID=$REDIS_PID"
      echo "CONFLUX_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    } >>"$env_file"
    start_ftp "$base/ftp"
    {
      echo "CONFLUX_TEST_FTP_PID=$FTP_PID"
      echo "CONFLUX_TEST_FTP_URL=ftp://$FTP_USER:$FTP_PASSWORD@127.0.0.1:$FTP_PORT"
      echo "CONFLUX_TEST_FTP_ROOT=$base/ftp/home"
      echo "CONFLUX_TEST_FTP_CA=$base/ftp/ca.pem"
    } >>"$env_file"
    start_prosody "$base/prosody"
    {
      echo "CONFLUX_TEST_PROSODY_DIR=$base/prosody"
      echo "CONFLUX_TEST_PROSODY_PORT=$PROSODY_PORT"
      echo "CONFLUX_TEST_PROSODY_TLS_PORT=$PROSODY_TLS_PORT"
      echo "CONFLUX_TEST_PROSODY_DOMAIN=localhost"
      echo "CONFLUX_TEST_PROSODY_CA=$base/prosody/certs/ca.crt"
      echo "CONFLUX_TEST_PROSODY_PID=$PROSODY_PID"
    } >>"$env_file"
    # mosquitto: the MQTT tests start their own on a free port (a real MQTT 5 broker with $share/).
    command -v mosquitto >/dev/null && command -v mosquitto_pub >/dev/null || apt_install mosquitto mosquitto-clients
    command -v mosquitto >/dev/null || die "no mosquitto after installing it"
    # Debian's Chromium for the browser tests (playwright-core drives it).
    [ -x /usr/bin/chromium ] || apt_install chromium
    [ -x /usr/bin/chromium ] || die "no /usr/bin/chromium after installing chromium"
    rabbit_wait "$base/rabbitmq" "$RABBIT_PORT" "$RABBIT_DIST_PORT" "$RABBIT_EPMD_PORT"
    echo "CONFLUX_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$RABBIT_PORT" >>"$env_file"
    trap - EXIT
    log "PostgreSQL on $PG_PORT, Redis on $REDIS_PORT, RabbitMQ on $RABBIT_PORT, FTPS on $FTP_PORT, Prosody on $PROSODY_PORT, ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    ;;
  stop) stop_all "$env_file" ;;
  prosody-stop | prosody-start)
    # shellcheck disable=SC1090
    . "$env_file"
    [ -n "${CONFLUX_TEST_PROSODY_DIR:-}" ] || die "$env_file names no Prosody"
    if [ "$cmd" = prosody-stop ]; then prosody_stop "$CONFLUX_TEST_PROSODY_DIR"
    else prosody_launch "$CONFLUX_TEST_PROSODY_DIR" "$CONFLUX_TEST_PROSODY_PORT" "$CONFLUX_TEST_PROSODY_TLS_PORT"; fi
    ;;
  rabbitmq-stop | rabbitmq-start)
    # shellcheck disable=SC1090
    . "$env_file"
    [ -n "${CONFLUX_TEST_RABBITMQ_DIR:-}" ] || die "$env_file names no RabbitMQ"
    # shellcheck disable=SC2046
    if [ "$cmd" = rabbitmq-stop ]; then rabbit_stop $(rabbit_args); else rabbit_launch $(rabbit_args) && rabbit_wait $(rabbit_args); fi
    ;;
  postgres-stop | postgres-start)
    # shellcheck disable=SC1090
    . "$env_file"
    [ -n "${CONFLUX_TEST_POSTGRES_DIR:-}" ] || die "$env_file names no PostgreSQL"
    if [ "$cmd" = postgres-stop ]; then
      # Fast: open sessions are cut, as a server restarted by its operator does; returns once it is down.
      [ -f "$CONFLUX_TEST_POSTGRES_DIR/postmaster.pid" ] || exit 0
      as_pg "$CONFLUX_TEST_PG_BIN/pg_ctl" -D "$CONFLUX_TEST_POSTGRES_DIR" -m fast -w -t 60 stop >/dev/null \
        || die "PostgreSQL did not stop: $(tail -n 20 "$CONFLUX_TEST_POSTGRES_DIR/server.log")"
    else
      pg_launch "$CONFLUX_TEST_PG_BIN" "$CONFLUX_TEST_POSTGRES_DIR" "$(pg_port)"
    fi
    ;;
  redis-stop | redis-start)
    # shellcheck disable=SC1090
    . "$env_file"
    [ -n "${CONFLUX_TEST_REDIS_DIR:-}" ] || die "$env_file names no Redis"
    if [ "$cmd" = redis-stop ]; then redis_stop; else
      rest=${CONFLUX_TEST_REDIS_URL##*:}
      start_redis "$CONFLUX_TEST_REDIS_DIR" "${rest%%/*}"
    fi
    ;;
  *) die "usage: servers.sh start|stop|{rabbitmq,prosody,postgres,redis}-{stop,start} ENV_FILE" ;;
esac
