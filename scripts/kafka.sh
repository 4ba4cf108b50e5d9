#!/usr/bin/env bash
# kafka.sh - a real single-node Apache Kafka broker (KRaft, combined
# broker+controller) on 127.0.0.1 for tests, demos and benchmarks.
#
#   kafka.sh install        fetch the broker jars from Maven Central (once) into $EC_CACHE
#   kafka.sh installed      exit 0 when the jars are there
#   kafka.sh start DIR      make TLS material, format storage, start, wait until ready;
#                           writes DIR/env (ports, credentials, CA path) for callers
#   kafka.sh stop DIR       stop the broker (data kept: start DIR again resumes it)
#   kafka.sh clean DIR      stop and remove DIR
#   kafka.sh create-topic DIR NAME PARTITIONS   create a topic (Kafka's TopicCommand)
#   kafka.sh delete-topic DIR NAME              delete a topic
#
# Listeners: PLAINTEXT; SASL_SSL with mechanism PLAIN (an API key/secret
# pair standing in for a Confluent Cloud API key), TLS from a throwaway CA;
# SASL_PLAINTEXT with OAUTHBEARER (Kafka's unsecured-JWT validator, scope
# "kafka" required) for the OAuth client-credentials tests.
set -euo pipefail
# shellcheck source=scripts/testca.sh
. "$(dirname "$0")/testca.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KAFKA_VERSION=3.9.1
EC_CACHE=${EC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/emqx_confluent}
LIBS=$EC_CACHE/kafka-$KAFKA_VERSION/libs
SASL_KEY=${EC_KAFKA_SASL_KEY:-ECTESTAPIKEY0001}
SASL_SECRET=${EC_KAFKA_SASL_SECRET:-ec-test-api-secret-0001}
STORE_PASS=changeit
# bumped when the broker configuration changes: an older DIR is recreated
CONFIG_VERSION=2

die() { echo "kafka.sh: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2 (run 'make deps')"
}

installed() { [ -f "$LIBS/.complete" ]; }

install() {
  installed && return 0
  need java "Kafka needs a Java runtime"
  need mvn "the Kafka jars are fetched with Maven"
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  mkdir -p "$LIBS"
  mvn -q -B -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$LIBS" -DincludeScope=runtime \
    || die "mvn could not fetch the Kafka jars"
  ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka_2.13 jar missing after mvn"
  touch "$LIBS/.complete"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free port found"
}

make_tls() {
  local d=$1/tls
  [ -f "$d/broker.p12" ] && return 0
  testca_make "$d" broker "emqx_confluent test CA"
  openssl pkcs12 -export -in "$d/broker.pem" -inkey "$d/broker.key" -certfile "$d/ca.pem" \
    -name broker -passout "pass:$STORE_PASS" -out "$d/broker.p12"
}

write_config() {
  local dir=$1 pport=$2 sport=$3 cport=$4 oport=$5
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$pport,SASL_SSL://127.0.0.1:$sport,OAUTH://127.0.0.1:$oport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$pport,SASL_SSL://127.0.0.1:$sport,OAUTH://127.0.0.1:$oport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,OAUTH:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_KEY="$SASL_SECRET";
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker" unsecuredValidatorRequiredScope="kafka";
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=$STORE_PASS
ssl.key.password=$STORE_PASS
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=2
PROPS
  cat > "$dir/log4j.properties" <<PROPS
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$dir/kafka.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
PROPS
}

java_cmd() {
  local dir=$1; shift
  java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$LIBS/*" "$@"
}

running() { [ -f "$1/kafka.pid" ] && kill -0 "$(cat "$1/kafka.pid")" 2>/dev/null; }

ready() {
  local dir=$1
  # shellcheck disable=SC1091
  . "$dir/env"
  kcat -L -b "$KAFKA_PLAINTEXT" -m 3 2>/dev/null | grep -q '1 brokers' || return 1
  kcat -L -b "$KAFKA_SASL_SSL" -m 3 -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN \
    -X sasl.username="$KAFKA_SASL_KEY" -X sasl.password="$KAFKA_SASL_SECRET" \
    -X ssl.ca.location="$KAFKA_CA" 2>/dev/null | grep -q '1 brokers' || return 1
  kcat -L -b "$KAFKA_SASL_OAUTH" -m 3 -X security.protocol=SASL_PLAINTEXT \
    -X sasl.mechanisms=OAUTHBEARER -X enable.sasl.oauthbearer.unsecure.jwt=true \
    -X sasl.oauthbearer.config="principal=ready scope=kafka" 2>/dev/null | grep -q '1 brokers'
}

start() {
  local dir=${1:?DIR}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  installed || install
  need java "Kafka needs a Java runtime"
  need kcat "readiness is checked with kcat"
  if [ -f "$dir/env" ] && ! grep -q "^KAFKA_CONFIG_VERSION=$CONFIG_VERSION\$" "$dir/env"; then
    echo "kafka.sh: $dir was made by an older kafka.sh: recreating it"
    stop "$dir"
    find "$dir" -mindepth 1 -delete
  fi
  running "$dir" && { echo "kafka.sh: already running in $dir"; return 0; }
  if [ ! -f "$dir/env" ]; then
    local pport sport cport oport
    pport=$(free_port); sport=$(free_port); cport=$(free_port); oport=$(free_port)
    while [ "$sport" = "$pport" ]; do sport=$(free_port); done
    while [ "$cport" = "$pport" ] || [ "$cport" = "$sport" ]; do cport=$(free_port); done
    while [ "$oport" = "$pport" ] || [ "$oport" = "$sport" ] || [ "$oport" = "$cport" ]; do
      oport=$(free_port)
    done
    make_tls "$dir"
    write_config "$dir" "$pport" "$sport" "$cport" "$oport"
    cat > "$dir/env" <<ENV
KAFKA_CONFIG_VERSION=$CONFIG_VERSION
KAFKA_PLAINTEXT=127.0.0.1:$pport
KAFKA_SASL_SSL=127.0.0.1:$sport
KAFKA_SASL_OAUTH=127.0.0.1:$oport
KAFKA_CONTROLLER=127.0.0.1:$cport
KAFKA_SASL_KEY=$SASL_KEY
KAFKA_SASL_SECRET=$SASL_SECRET
KAFKA_CA=$dir/tls/ca.pem
KAFKA_DIR=$dir
ENV
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cid
    cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
    java_cmd "$dir" kafka.tools.StorageTool format --cluster-id="$cid" --config="$dir/server.properties" \
      > "$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "storage format failed"; }
  fi
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$LIBS/*" \
    kafka.Kafka "$dir/server.properties" > "$dir/stdout.log" 2>&1 &
  echo $! > "$dir/kafka.pid"
  local deadline=$((SECONDS + 120))
  until ready "$dir"; do
    running "$dir" || { tail -30 "$dir/kafka.log" "$dir/stdout.log" >&2; die "broker exited during start"; }
    [ $SECONDS -lt $deadline ] || { tail -30 "$dir/kafka.log" >&2; die "broker not ready after 120 s"; }
    sleep 0.5
  done
  echo "kafka.sh: ready in $dir ($(grep -E '^KAFKA_(PLAINTEXT|SASL_SSL|SASL_OAUTH)=' "$dir/env" | tr '\n' ' '))"
}

stop() {
  local dir=${1:?DIR}
  [ -f "$dir/kafka.pid" ] || return 0
  local pid
  pid=$(cat "$dir/kafka.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/kafka.pid"
}

create_topic() {
  local dir=${1:?DIR} name=${2:?NAME} parts=${3:?PARTITIONS}
  # shellcheck disable=SC1091
  . "$dir/env"
  java -Xms64m -Xmx256m -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$LIBS/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_PLAINTEXT" --create \
    --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1
}

delete_topic() {
  local dir=${1:?DIR} name=${2:?NAME}
  # shellcheck disable=SC1091
  . "$dir/env"
  java -Xms64m -Xmx256m -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$LIBS/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_PLAINTEXT" --delete --topic "$name"
}

case "${1:-}" in
  install) install ;;
  installed) installed ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  clean) stop "${2:?DIR}"; rm -rf "$2" ;;
  create-topic) create_topic "${2:-}" "${3:-}" "${4:-}" ;;
  delete-topic) delete_topic "${2:-}" "${3:-}" ;;
  *) echo "usage: $0 install|installed|start DIR|stop DIR|clean DIR|create-topic DIR NAME N" >&2; exit 2 ;;
esac
