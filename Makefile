# emqx_confluent - build, test, bench, package.
#   make demo       MQTT -> rules -> local Kafka (SASL_SSL), end to end, then stops everything
#   make            NIF library + rule-test CLI into priv/
#   make test       every suite (C unit tests + common_test); SAN=1 for ASan+UBSan C tests
#   make deps       install what a fresh Debian bookworm machine lacks (scripts/deps.sh)
#   make fmt-check  clang-format check of c_src/
#   make plugin     EMQX plugin package _build/plugin/emqx_confluent-<vsn>.tar.gz
.PHONY: all nif cli c-tests c-test ct test deps deps-check fmt fmt-check fuzz bench bench-mqtt clean plugin demo

CC      ?= cc
SAN     ?= 0
# error texts are cut to their buffers on purpose: -Wno-format-truncation
WARN    = -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers -Wno-format-truncation
CFLAGS  = -std=gnu11 -D_GNU_SOURCE -g -O2 $(WARN) -fPIC -fvisibility=hidden -pthread
# C unit tests, CLI and fuzzers can be built with sanitizers (SAN=1, clang);
# the NIF library is always the plain build: it must load into a stock VM.
SANFLAGS = -std=gnu11 -D_GNU_SOURCE -g -O1 $(WARN) -Wno-unknown-warning-option -fPIC -pthread -fno-omit-frame-pointer \
           -fsanitize=address,undefined -fno-sanitize-recover=undefined
LIBS    = -lrdkafka -lmosquitto -lcjson -lpcre2-8 -lssl -lcrypto -lz -lm -lpthread

ifeq ($(SAN),1)
  TCC    = clang
  BUILD  = _build/c-san
  TFLAGS = $(SANFLAGS)
else
  TCC    = $(CC)
  BUILD  = _build/c
  TFLAGS = $(CFLAGS)
endif

ERTS_INCLUDE := $(shell erl -noshell -eval 'io:format("~ts/erts-~ts/include", [code:root_dir(), erlang:system_info(version)]), halt().' 2>/dev/null)

CORE_SRC  = $(wildcard c_src/core/*.c) $(wildcard c_src/sql/*.c) $(wildcard c_src/sink/*.c) $(wildcard c_src/kafka/*.c) $(wildcard c_src/mqtt/*.c) $(wildcard c_src/buffer/*.c) $(wildcard c_src/tester/*.c)
NIF_SRC   = $(wildcard c_src/nif/*.c)
CLI_SRC   = $(wildcard c_src/cli/*.c)
TEST_SRC  = $(wildcard c_src/tests/*.c)
HEADERS   = $(wildcard c_src/*/*.h)
obj       = $(1:%.c=$(2)/%.o)

_build/c/c_src/nif/%.o: c_src/nif/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(ERTS_INCLUDE) -c $< -o $@

_build/c/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

_build/c-san/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(SANFLAGS) -c $< -o $@

NIF_SO    = priv/emqx_confluent_nif.so
CLI_BIN   = priv/bin/rule-test
C_TESTS   = $(BUILD)/c_tests

all: nif cli
nif: $(NIF_SO)
cli: $(CLI_BIN)

$(NIF_SO): $(call obj,$(CORE_SRC) $(NIF_SRC),_build/c)
	@mkdir -p priv
	$(CC) -shared -fPIC -pthread -o $@ $^ $(LIBS)

$(CLI_BIN): $(call obj,$(CORE_SRC) $(CLI_SRC),$(BUILD))
	@mkdir -p priv/bin
	$(TCC) $(TFLAGS) -o $@ $^ $(LIBS)

$(C_TESTS): $(call obj,$(CORE_SRC) $(TEST_SRC),$(BUILD))
	$(TCC) $(TFLAGS) -o $@ $^ $(LIBS)

c-tests: $(C_TESTS)

# make c-test [T="json_* arena_reset_reuses_and_adapts"]
c-test: $(C_TESTS)
	$(C_TESTS) $(T)

ct: all
	rebar3 ct $(CT_ARGS)

demo:
	scripts/demo.sh

plugin: all
	rebar3 compile
	scripts/plugin.sh

deps:
	scripts/deps.sh

deps-check:
	@scripts/deps.sh --check >/dev/null 2>&1 || scripts/deps.sh

# Runs every suite, then prints the one summary line "N passed, N failed".
test: deps-check
	@scripts/run-tests.sh

fmt:
	clang-format -i $(wildcard c_src/*/*.[ch])

fmt-check:
	clang-format --dry-run -Werror $(wildcard c_src/*/*.[ch])

clean:
	rm -rf _build priv/emqx_confluent_nif.so priv/bin

# libFuzzer targets (clang): make fuzz builds them; scripts/run-tests.sh runs
# each for FUZZ_SECONDS on its seed corpus (test/fuzz-corpus/NAME).
FUZZ_SRC  = $(wildcard c_src/fuzz/fuzz_*.c)
FUZZ_BINS = $(FUZZ_SRC:c_src/fuzz/%.c=_build/fuzz/%)
FUZZFLAGS = -std=gnu11 -D_GNU_SOURCE -g -O1 $(WARN) -Wno-unknown-warning-option -pthread -fsanitize=fuzzer,address,undefined

fuzz: $(FUZZ_BINS)

_build/fuzz/%: c_src/fuzz/%.c $(CORE_SRC) $(HEADERS)
	@mkdir -p _build/fuzz
	clang $(FUZZFLAGS) -o $@ $< $(CORE_SRC) $(LIBS)

# Benchmarks (not part of make test): figures go to bench/RESULTS.md by hand,
# with the command, the machine and the baseline of the same run.
BENCH_BINS = _build/bench/bench_rules _build/bench/bench_sink _build/bench/bench_rss _build/bench/bench_mqtt
_build/bench/%: bench/%.c $(call obj,$(CORE_SRC),_build/c)
	@mkdir -p _build/bench
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

# The sink benchmark runs against librdkafka's mock cluster and a real local
# broker that scripts/kafka.sh starts (and stops) for it.
bench: $(BENCH_BINS)
	taskset -c 0 _build/bench/bench_rules
	@scripts/bench-sink.sh
	_build/bench/bench_rss
	@scripts/bench-mqtt.sh

# MQTT -> node -> Kafka end to end, next to mosquitto alone (same run)
bench-mqtt: _build/bench/bench_mqtt
	@scripts/bench-mqtt.sh
