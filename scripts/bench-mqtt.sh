#!/usr/bin/env bash
# bench-mqtt.sh - MQTT -> emqx_confluent (standalone: MQTT source, rule,
# Kafka action) -> Kafka, measured end to end next to mosquitto alone in the
# same run. Starts and removes its own Kafka, mosquitto and node.
#   BENCH_N (default 200000) messages of BENCH_SIZE (default 100) bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-200000}
SIZE=${BENCH_SIZE:-100}
D=_build/bench/mqtt
PORT=${BENCH_API_PORT:-18094}
KEY=bench; SECRET=bench-secret
NODE_PID=""
cleanup() {
  set +e
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
  scripts/mqtt.sh stop "$D/mqtt" >/dev/null 2>&1
  scripts/kafka.sh clean "$D/kafka" >/dev/null 2>&1
}
trap cleanup EXIT
rm -rf "$D"; mkdir -p "$D"
rebar3 compile >/dev/null
scripts/kafka.sh start "$D/kafka" >/dev/null
scripts/mqtt.sh start "$D/mqtt" >/dev/null
# shellcheck disable=SC1091
. "$D/kafka/env"; . "$D/mqtt/env"
scripts/kafka.sh create-topic "$D/kafka" bench-mqtt 3 >/dev/null
EMQX_CONFLUENT_API_KEY=$KEY EMQX_CONFLUENT_API_SECRET=$SECRET EMQX_CONFLUENT_DATA_DIR=$D/node \
EMQX_CONFLUENT_LISTEN=127.0.0.1:$PORT \
  erl -noshell -noinput -sname "ecbench$$" -pa _build/default/lib/emqx_confluent/ebin \
      -eval '{ok, _} = application:ensure_all_started(emqx_confluent)' > "$D/node.log" 2>&1 &
NODE_PID=$!
api() { curl -sS -f -o /dev/null -u "$KEY:$SECRET" -H 'content-type: application/json' -X "$1" "http://127.0.0.1:$PORT/api/v5$2" "${@:3}"; }
for _ in $(seq 1 100); do api GET /status 2>/dev/null && break; sleep 0.2; done
api POST /connectors -d "{\"type\":\"kafka_producer\",\"name\":\"k\",\"bootstrap_hosts\":\"$KAFKA_PLAINTEXT\"}"
api POST /actions -d '{"type":"kafka_producer","name":"a","connector":"k","parameters":{"topic":"bench-mqtt","message":{"key":"${topic}","value":"${payload}"},"partition_strategy":"key_dispatch","required_acks":"leader_only"}}'
api POST /rules -d '{"id":"bench","sql":"SELECT payload, topic FROM \"bench/#\"","actions":["kafka_producer:a"]}'
api POST /connectors -d "{\"type\":\"mqtt\",\"name\":\"m\",\"server\":\"127.0.0.1:$MQTT_PORT\",\"clean_start\":true}"
api POST /sources -d '{"type":"mqtt","name":"s","connector":"m","parameters":{"topic":"bench/#","qos":1}}'
echo "bench_mqtt: $N messages of $SIZE B, QoS 1; $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
# throughput: as fast as mosquitto takes them
_build/bench/bench_mqtt mqtt 127.0.0.1 "$MQTT_PORT" "$N" "$SIZE" 0
_build/bench/bench_mqtt kafka 127.0.0.1 "$MQTT_PORT" "$N" "$SIZE" 0 "$KAFKA_PLAINTEXT" bench-mqtt
# latency: paced at RATE msg/s, below both ceilings
RATE=${BENCH_RATE:-5000}
_build/bench/bench_mqtt mqtt 127.0.0.1 "$MQTT_PORT" $((RATE * 10)) "$SIZE" "$RATE"
scripts/kafka.sh create-topic "$D/kafka" bench-mqtt-paced 3 >/dev/null
api PUT /actions/kafka_producer:a -d '{"connector":"k","parameters":{"topic":"bench-mqtt-paced","message":{"key":"${topic}","value":"${payload}"},"partition_strategy":"key_dispatch","required_acks":"leader_only"}}'
_build/bench/bench_mqtt kafka 127.0.0.1 "$MQTT_PORT" $((RATE * 10)) "$SIZE" "$RATE" "$KAFKA_PLAINTEXT" bench-mqtt-paced
echo "action metrics (paced run): $(curl -sS -u "$KEY:$SECRET" "http://127.0.0.1:$PORT/api/v5/actions/kafka_producer:a/metrics" | grep -o '"metrics":{[^}]*}' | head -1)"
echo "source metrics: $(curl -sS -u "$KEY:$SECRET" "http://127.0.0.1:$PORT/api/v5/sources/mqtt:s/metrics" | grep -o '"metrics":{[^}]*}' | head -1)"
