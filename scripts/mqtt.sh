#!/usr/bin/env bash
# mqtt.sh - Debian's mosquitto on 127.0.0.1 on free ports, for end-to-end tests.
#
#   mqtt.sh start DIR   start and wait until a client can connect; writes DIR/env:
#                       MQTT_PORT (anonymous), MQTT_AUTH_PORT (username/password),
#                       MQTT_TLS_PORT (TLS + username/password, certificate for 127.0.0.1
#                       signed by MQTT_CA), MQTT_USER, MQTT_PASSWORD, MQTT_CA
#   mqtt.sh stop DIR    stop it (start again reuses the ports)
set -euo pipefail
# shellcheck source=scripts/testca.sh
. "$(dirname "$0")/testca.sh"

die() { echo "mqtt.sh: $*" >&2; exit 1; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() { [ -f "$1/mosquitto.pid" ] && kill -0 "$(cat "$1/mosquitto.pid")" 2>/dev/null; }

# a free port not among the arguments
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    case " $* " in *" $p "*) continue ;; esac
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free port"
}

# a throwaway CA and a server certificate for 127.0.0.1 / localhost
make_tls() {
  local d=$1/tls
  testca_make "$d" server "emqx_confluent mqtt test CA"
  chmod 644 "$d/server.key"
}

start() {
  local dir=${1:?DIR}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -x "$MOSQUITTO" ] || die "mosquitto not found (run 'make deps')"
  command -v mosquitto_pub >/dev/null || die "mosquitto_pub not found (run 'make deps')"
  running "$dir" && return 0
  local port aport tport
  if [ -f "$dir/env" ]; then
    # shellcheck disable=SC1091
    . "$dir/env"; port=$MQTT_PORT; aport=$MQTT_AUTH_PORT; tport=$MQTT_TLS_PORT
  else
    port=$(free_port); aport=$(free_port "$port"); tport=$(free_port "$port" "$aport")
    make_tls "$dir"
    mosquitto_passwd -b -c "$dir/passwd" bridge bridge-secret 2>/dev/null
    printf 'MQTT_PORT=%s\nMQTT_AUTH_PORT=%s\nMQTT_TLS_PORT=%s\nMQTT_USER=bridge\nMQTT_PASSWORD=bridge-secret\nMQTT_CA=%s\n' \
      "$port" "$aport" "$tport" "$dir/tls/ca.pem" > "$dir/env"
  fi
  cat > "$dir/mosquitto.conf" <<CONF
per_listener_settings true
persistence false
log_dest file $dir/mosquitto.log
max_queued_messages 100000
listener $port 127.0.0.1
allow_anonymous true
listener $aport 127.0.0.1
allow_anonymous false
password_file $dir/passwd
listener $tport 127.0.0.1
allow_anonymous false
password_file $dir/passwd
cafile $dir/tls/ca.pem
certfile $dir/tls/server.pem
keyfile $dir/tls/server.key
CONF
  "$MOSQUITTO" -c "$dir/mosquitto.conf" > "$dir/stdout.log" 2>&1 &
  echo $! > "$dir/mosquitto.pid"
  for _ in $(seq 1 100); do
    if mosquitto_pub -h 127.0.0.1 -p "$port" -t ec/ready -m x -q 1 2>/dev/null; then
      echo "mqtt.sh: mosquitto ready on 127.0.0.1:$port"
      return 0
    fi
    running "$dir" || { cat "$dir/stdout.log" >&2; die "mosquitto exited during start"; }
    sleep 0.1
  done
  die "mosquitto not ready after 10 s"
}

stop() {
  local dir=${1:?DIR}
  [ -f "$dir/mosquitto.pid" ] || return 0
  local pid
  pid=$(cat "$dir/mosquitto.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/mosquitto.pid"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start DIR|stop DIR" >&2; exit 2 ;;
esac
