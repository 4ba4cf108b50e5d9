#!/usr/bin/env bash
# deps.sh - installs, idempotently, everything a fresh Debian bookworm machine
# lacks to build and test emqx_confluent: toolchain, Erlang/OTP, rebar3,
# librdkafka, cJSON, OpenSSL, zlib, libmosquitto, mosquitto (+clients), kcat,
# clang (sanitizers, libFuzzer), a JRE and Maven, and the Kafka broker jars.
#
#   scripts/deps.sh           install what is missing
#   scripts/deps.sh --check   exit 0 when nothing is missing, 1 otherwise
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential pkg-config clang libclang-rt-14-dev clang-format
  erlang-nox erlang-dev erlang-common-test erlang-eunit erlang-proper erlang-proper-dev erlang-dialyzer
  erlang-inets erlang-ssl erlang-crypto erlang-tools rebar3
  librdkafka-dev libcjson-dev libssl-dev zlib1g-dev libpcre2-dev libmosquitto-dev
  mosquitto mosquitto-clients kcat openssl iproute2 curl
  default-jre-headless maven
)

missing_packages() {
  local p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"
  done
}

missing=$(missing_packages)
if [ "${1:-}" = "--check" ]; then
  [ -z "$missing" ] && scripts/kafka.sh installed && exit 0
  exit 1
fi

if [ -n "$missing" ]; then
  echo "deps: installing:" $missing
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
scripts/kafka.sh install
echo "deps: all present"
