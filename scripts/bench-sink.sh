#!/usr/bin/env bash
# bench-sink.sh - runs bench_sink on the mock cluster and on a real local
# Kafka broker started for the run (and removed afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=_build/bench/kafka
scripts/kafka.sh clean "$dir" >/dev/null 2>&1 || true
scripts/kafka.sh start "$dir" >/dev/null
trap 'scripts/kafka.sh clean "$dir" >/dev/null 2>&1' EXIT
scripts/kafka.sh create-topic "$dir" bench-real 3 >/dev/null
# shellcheck disable=SC1091
. "$dir/env"
# runs of 1,000,000 records: 100,000 (a tenth of a second) measured mostly start-up
BENCH_RECORDS=${BENCH_RECORDS:-1000000} KAFKA_BOOTSTRAP=$KAFKA_PLAINTEXT KAFKA_BENCH_TOPIC=bench-real \
  _build/bench/bench_sink
