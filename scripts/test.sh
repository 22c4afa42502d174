#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The whole test run, as CI runs it (.ci/run calls this script):
#   0. installs missing packages (scripts/setup.sh);
#   1. ThreadSanitizer build: the concurrency tests (label "concurrency");
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build: every test;
#   3. libFuzzer targets, 20 seconds each (scripts/fuzz.sh);
#   4. normal build: a 20-second soak per backend (scripts/soak.sh 20);
#   5. every test of the normal build; its CTest summary is the last thing
#      printed.
# Warnings are errors in every build. Any sanitizer report fails the run.
# Tests that need Redis start their own redis-server on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

jobs=$(nproc 2>/dev/null || echo 2)
export CTEST_OUTPUT_ON_FAILURE=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

build() { # dir, cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -DNORI_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

# Each stage prints its number, its name and the time elapsed so far, so a
# long run says where it is.
start=$SECONDS
stages=5
stage_no=0
stage() {
  stage_no=$((stage_no + 1))
  local t=$((SECONDS - start))
  printf '\n== [%d/%d] %s (%dm%02ds elapsed)\n' "$stage_no" "$stages" "$1" $((t / 60)) $((t % 60))
}

stage "ThreadSanitizer build: the concurrency tests"
build build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNORI_SANITIZE=thread
(cd build-tsan && ctest -L concurrency -j "$jobs" --no-label-summary)

stage "AddressSanitizer + UndefinedBehaviorSanitizer build: every test"
build build-asan -DCMAKE_BUILD_TYPE=Debug -DNORI_SANITIZE=address,undefined
(cd build-asan && ctest -j "$jobs" --no-label-summary)

stage "libFuzzer targets, 20 s each"
bash scripts/fuzz.sh -max_total_time=20

stage "normal build, then a soak: nori-demo under wrk, 20 s per backend"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
bash scripts/soak.sh 20

stage "normal build: every test (CTest's summary ends the run)"
cd build && exec ctest -j "$jobs"
