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
# shellcheck source=scripts/standalone.sh
. scripts/standalone.sh
trap 'ec_stop "$D"' EXIT
rm -rf "$D"; mkdir -p "$D"
rebar3 compile >/dev/null
ec_start_services "$D" >/dev/null
scripts/kafka.sh create-topic "$D/kafka" bench-mqtt 3 >/dev/null
ec_start_node "$D" "$PORT" bench bench-secret
api() { ec_api "$@" >/dev/null; }
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
echo "action metrics (paced run): $(ec_api GET /actions/kafka_producer:a/metrics | grep -o '"metrics":{[^}]*}' | head -1)"
echo "source metrics: $(ec_api GET /sources/mqtt:s/metrics | grep -o '"metrics":{[^}]*}' | head -1)"
