#!/usr/bin/env bash
# demo.sh - `make demo`: the whole path on this machine, from nothing.
#   1. installs what is missing (scripts/deps.sh) and builds
#   2. starts a local Kafka (KRaft; SASL_SSL/PLAIN as Confluent Cloud) and mosquitto
#   3. starts an emqx_confluent node in standalone mode (no EMQX)
#   4. through the REST API: a confluent_producer connector (API key/secret over
#      SASL_SSL), an action, the rule SELECT * FROM "t/#", and an MQTT source on t/#
#   5. publishes {"msg": "Hello Confluent"} to t/1 with mosquitto_pub, then a
#      stream of vehicle telemetry with MQTT 5 user properties
#   6. consumes what arrived in Kafka and prints it with the action's metrics
# and stops everything it started, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO=${DEMO_DIR:-$ROOT/_build/demo}
PORT=${DEMO_API_PORT:-18084}
VEHICLES=${DEMO_VEHICLES:-5}
PER_VEHICLE=${DEMO_MESSAGES:-20}
TOPIC=iot-telemetry
KEY=demo-admin
SECRET=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# shellcheck source=scripts/standalone.sh
. scripts/standalone.sh
trap 'ec_stop "$DEMO"; echo "demo: stopped the node, mosquitto and Kafka"' EXIT

say "dependencies and build"
scripts/deps.sh --check || scripts/deps.sh
make --no-print-directory all >/dev/null
rebar3 compile >/dev/null

say "local Kafka (PLAINTEXT + SASL_SSL/PLAIN) and mosquitto"
rm -rf "$DEMO"; mkdir -p "$DEMO"
ec_start_services "$DEMO"
scripts/kafka.sh create-topic "$DEMO/kafka" "$TOPIC" 3 >/dev/null

say "emqx_confluent node (standalone), REST API on 127.0.0.1:$PORT"
ec_start_node "$DEMO" "$PORT" "$KEY" "$SECRET"
api() { ec_api "$@"; }
api GET /status; echo

say "connector: confluent_producer over SASL_SSL with an API key/secret"
api POST /connectors -d @- <<JSON | head -c 400; echo " ..."
{"type": "confluent_producer", "name": "my_confluent",
 "bootstrap_hosts": "$KAFKA_SASL_SSL",
 "authentication": {"username": "$KAFKA_SASL_KEY", "password": "$KAFKA_SASL_SECRET"}}
JSON

say "action: to $TOPIC, key = MQTT topic, value = the rule output"
api POST /actions -d @- <<JSON | head -c 400; echo " ..."
{"type": "confluent_producer", "name": "to_confluent", "connector": "my_confluent",
 "parameters": {"topic": "$TOPIC", "message": {"key": "\${.topic}", "value": "\${.}"},
                "partition_strategy": "key_dispatch", "kafka_headers": "\${.pub_props.User-Property}"}}
JSON

say "rule: SELECT * FROM \"t/#\""
api POST /rules -d '{"id": "demo_rule", "sql": "SELECT * FROM \"t/#\"", "actions": ["confluent_producer:to_confluent"]}'; echo

say "MQTT source: subscribe to t/# on mosquitto (MQTT 5, QoS 1)"
api POST /connectors -d "{\"type\": \"mqtt\", \"name\": \"local_mqtt\", \"server\": \"127.0.0.1:$MQTT_PORT\", \"proto_ver\": \"v5\"}" >/dev/null
api POST /sources -d '{"type": "mqtt", "name": "fleet", "connector": "local_mqtt", "parameters": {"topic": "t/#", "qos": 1}}' \
  | grep -o '"status":"[a-z]*"' | head -1

say "publish: { \"msg\": \"Hello Confluent\" } to t/1, then $((VEHICLES * PER_VEHICLE)) vehicle messages"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -V 5 -q 1 -t t/1 -m '{ "msg": "Hello Confluent" }'
for v in $(seq 1 "$VEHICLES"); do
  vin=$(printf 'WDB%08d' "$v")
  for i in $(seq 1 "$PER_VEHICLE"); do
    printf '{"vin":"%s","seq":%d,"speed_kmh":%d,"fuel_pct":%d,"lat":52.%04d,"lon":13.%04d}\n' \
      "$vin" "$i" $(( (v * 7 + i * 3) % 130 )) $(( 100 - i )) $(( (v * 37 + i) % 10000 )) $(( (v * 53 + i) % 10000 ))
  done | mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -V 5 -q 1 -t "t/vehicles/$vin" -l \
           -D publish user-property fleet berlin-north -D publish user-property vin "$vin"
done

say "consume from Kafka ($TOPIC)"
want=$((1 + VEHICLES * PER_VEHICLE))
for _ in $(seq 1 100); do
  got=$(kcat -C -b "$KAFKA_PLAINTEXT" -t "$TOPIC" -o beginning -e -q -f 'x\n' 2>/dev/null | wc -l)
  [ "$got" -ge "$want" ] && break
  sleep 0.2
done
kcat -C -b "$KAFKA_PLAINTEXT" -t "$TOPIC" -o beginning -e -q \
     -f 'partition %p offset %o key %k headers %h\n  %s\n' > "$DEMO/consumed.txt" 2>/dev/null || true
grep -B1 'Hello Confluent' "$DEMO/consumed.txt" || true
grep -A1 -m 3 '^partition' "$DEMO/consumed.txt" | grep -v -e '^--$' -e 'Hello' | sed -n 1,6p || true
echo "  ... (all of them in $DEMO/consumed.txt)"
echo "records in Kafka: $got of $want published"

say "action metrics"
api GET /actions/confluent_producer:to_confluent/metrics | grep -o '"metrics":{[^}]*}' | head -1; echo
say "rule metrics"
api GET /rules/demo_rule/metrics | grep -o '"metrics":{[^}]*}' | head -1; echo
[ "$got" -ge "$want" ] || { echo "demo: FAILED, $got of $want arrived"; exit 1; }
echo "demo: OK"
