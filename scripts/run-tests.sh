#!/usr/bin/env bash
# run-tests.sh - what `make test` runs: every suite, then one summary line.
#   1. C unit tests (ASan+UBSan build with SAN=1)
#   2. clang-format check of c_src/, and libFuzzer targets, each for FUZZ_SECONDS (default 20; 0 skips) on its seed corpus
#   3. common_test suites (rebar3 ct) against the real Kafka and mosquitto
# Ends with "total: N passed, N failed"; exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export EC_ROOT=$PWD
SAN=${SAN:-0}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
LOG=_build/test-logs
mkdir -p "$LOG"
passed=0; failed=0

add() { passed=$((passed + $1)); failed=$((failed + $2)); }

echo "== build"
if ! make --no-print-directory -j2 all c-tests SAN="$SAN" > "$LOG/build.log" 2>&1; then
  cat "$LOG/build.log"; echo "build failed"; echo "total: 0 passed, 1 failed"; exit 1
fi

echo "== C unit tests"
bin=_build/c/c_tests; [ "$SAN" = 1 ] && bin=_build/c-san/c_tests
"$bin" 2>&1 | tee "$LOG/c_tests.log" | grep -v '^ok '
line=$(grep -E '^c_tests: [0-9]+ passed, [0-9]+ failed' "$LOG/c_tests.log" | tail -1)
if [ -n "$line" ]; then
  add "$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')" "$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')"
else
  echo "c_tests crashed"; add 0 1
fi

echo "== format (clang-format)"
if make --no-print-directory fmt-check > "$LOG/fmt.log" 2>&1; then
  echo "ok   fmt-check"; add 1 0
else
  echo "FAIL fmt-check (run 'make fmt')"; grep -m5 'error' "$LOG/fmt.log"; add 0 1
fi

if [ "$FUZZ_SECONDS" -gt 0 ]; then
  echo "== fuzz (${FUZZ_SECONDS}s each)"
  if make --no-print-directory fuzz > "$LOG/fuzz-build.log" 2>&1; then
    for f in _build/fuzz/fuzz_*; do
      name=${f##*/fuzz_}
      corpus=_build/fuzz/corpus-$name
      mkdir -p "$corpus"
      cp -n test/fuzz-corpus/"$name"/* "$corpus"/ 2>/dev/null || true
      if "$f" -max_total_time="$FUZZ_SECONDS" -artifact_prefix=_build/fuzz/crash-"$name"- \
           "$corpus" > "$LOG/fuzz-$name.log" 2>&1; then
        echo "ok   fuzz_$name ($(grep -Eo 'Done [0-9]+ runs' "$LOG/fuzz-$name.log"))"; add 1 0
      else
        echo "FAIL fuzz_$name (see $LOG/fuzz-$name.log; inputs in _build/fuzz/crash-$name-*)"
        tail -30 "$LOG/fuzz-$name.log"; add 0 1
      fi
    done
  else
    cat "$LOG/fuzz-build.log"; add 0 1
  fi
fi

echo "== common_test"
rebar3 ct ${CT_ARGS:-} > "$LOG/ct.log" 2>&1
ct_status=$?
out=$(sed 's/\x1b\[[0-9;]*m//g' "$LOG/ct.log")
grep -E '^%%% |Failed|Passed|Skipped|Failure/Error' <<<"$out"
ct_pass=0; ct_fail=0
if grep -Eq 'All [0-9]+ tests passed' <<<"$out"; then
  ct_pass=$(grep -Eo 'All [0-9]+ tests passed' <<<"$out" | grep -Eo '[0-9]+' | tail -1)
elif grep -Eq 'Failed [0-9]+ tests' <<<"$out"; then
  ct_fail=$(grep -Eo 'Failed [0-9]+ tests' <<<"$out" | grep -Eo '[0-9]+' | tail -1)
  ct_pass=$(grep -Eo 'Passed [0-9]+ tests' <<<"$out" | grep -Eo '[0-9]+' | tail -1)
  ct_pass=${ct_pass:-0}
fi
if [ "$ct_status" -ne 0 ] && [ "$ct_fail" -eq 0 ]; then
  tail -40 "$LOG/ct.log"; ct_fail=1   # crashed before counting (compile error, hook failure)
fi
add "$ct_pass" "$ct_fail"

echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
