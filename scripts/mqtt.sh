#!/usr/bin/env bash
# mqtt.sh - Debian's mosquitto on 127.0.0.1 on a free port, for end-to-end tests.
#
#   mqtt.sh start DIR   start and wait until a client can connect; writes DIR/env (MQTT_PORT)
#   mqtt.sh stop DIR    stop it
set -euo pipefail

die() { echo "mqtt.sh: $*" >&2; exit 1; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() { [ -f "$1/mosquitto.pid" ] && kill -0 "$(cat "$1/mosquitto.pid")" 2>/dev/null; }

start() {
  local dir=${1:?DIR}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -x "$MOSQUITTO" ] || die "mosquitto not found (run 'make deps')"
  command -v mosquitto_pub >/dev/null || die "mosquitto_pub not found (run 'make deps')"
  running "$dir" && return 0
  local port
  if [ -f "$dir/env" ]; then
    # shellcheck disable=SC1091
    . "$dir/env"; port=$MQTT_PORT
  else
    for _ in $(seq 1 200); do
      port=$((20000 + RANDOM % 30000))
      port_in_use "$port" || break
    done
    echo "MQTT_PORT=$port" > "$dir/env"
  fi
  cat > "$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest file $dir/mosquitto.log
max_queued_messages 100000
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
