# standalone.sh - sourced by demo.sh and bench-mqtt.sh (run from the project
# root): a local Kafka and mosquitto under DIR, a standalone emqx_confluent
# node with its REST API, and the clean-up of all three.
#   ec_start_services DIR             start Kafka and mosquitto; their env is sourced
#   ec_start_node DIR PORT KEY SECRET start the node (log in DIR/node.log), wait for its API
#   ec_api METHOD PATH [curl args]    call the API; prints the body, fails on an HTTP error
#   ec_stop DIR                       stop the node, mosquitto and Kafka (for an EXIT trap)
# shellcheck shell=bash

EC_NODE_PID=""

ec_start_services() {
  local dir=$1
  scripts/kafka.sh start "$dir/kafka"
  scripts/mqtt.sh start "$dir/mqtt"
  # shellcheck disable=SC1091
  . "$dir/kafka/env"
  # shellcheck disable=SC1091
  . "$dir/mqtt/env"
}

ec_start_node() {
  local dir=$1 port=$2
  EC_API_URL="http://127.0.0.1:$port/api/v5"
  EC_API_AUTH="$3:$4"
  EMQX_CONFLUENT_API_KEY=$3 EMQX_CONFLUENT_API_SECRET=$4 \
  EMQX_CONFLUENT_DATA_DIR=$dir/node EMQX_CONFLUENT_LISTEN=127.0.0.1:$port \
    erl -noshell -noinput -sname "ecnode$$" -pa _build/default/lib/emqx_confluent/ebin \
        -eval '{ok, _} = application:ensure_all_started(emqx_confluent)' > "$dir/node.log" 2>&1 &
  EC_NODE_PID=$!
  for _ in $(seq 1 100); do
    ec_api GET /status >/dev/null 2>&1 && return 0
    kill -0 "$EC_NODE_PID" 2>/dev/null || { cat "$dir/node.log"; return 1; }
    sleep 0.2
  done
  echo "the node's REST API did not answer; its log:" >&2
  cat "$dir/node.log" >&2
  return 1
}

ec_api() {
  local m=$1 p=$2
  shift 2
  curl -sS --fail-with-body -u "$EC_API_AUTH" -X "$m" -H 'content-type: application/json' \
       "$EC_API_URL$p" "$@"
}

ec_stop() {
  set +e
  [ -n "$EC_NODE_PID" ] && kill "$EC_NODE_PID" 2>/dev/null && wait "$EC_NODE_PID" 2>/dev/null
  scripts/mqtt.sh stop "$1/mqtt" >/dev/null 2>&1
  scripts/kafka.sh clean "$1/kafka" >/dev/null 2>&1
}
