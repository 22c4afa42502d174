#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each one.
#   scripts/fuzz.sh                 each target for 20 seconds (what CI runs)
#   scripts/fuzz.sh -runs=10000000  each target for ten million executions
#   scripts/fuzz.sh -max_total_time=600 fuzz_redis_url   one target, ten minutes
# The seed corpus in fuzz/corpus/<target> is read, never written: new inputs
# go to a temporary directory. A crash leaves its input in build-fuzz/ and
# fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

budget=${1:--max_total_time=20}
shift || true
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNORI_BUILD_FUZZ=ON \
  -DNORI_SANITIZE=address,undefined -DNORI_BUILD_TESTS=OFF -DNORI_BUILD_EXAMPLES=OFF \
  -DNORI_BUILD_TOOLS=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(ls fuzz/corpus)
  targets=("${targets[@]/#/fuzz_}")
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/${t#fuzz_}
  mkdir -p "$work/$t"
  echo "== $t ($budget)"
  rc=0
  (cd build-fuzz && ./fuzz/"$t" "$budget" -print_final_stats=1 "$work/$t" "../$corpus") \
    >"$work/$t.log" 2>&1 || rc=$?
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss)|ERROR|SUMMARY" \
    "$work/$t.log" || true
  if ((rc != 0)); then
    tail -40 "$work/$t.log"
    echo "fuzz: $t failed (exit $rc)"
    exit 1
  fi
done
