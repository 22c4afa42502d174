#!/usr/bin/env bash
# The whole test run, as CI runs it (.ci/run calls this script):
#   1. installs missing packages (scripts/setup.sh);
#   2. ThreadSanitizer build: the concurrency tests (label "concurrency");
#   3. AddressSanitizer + UndefinedBehaviorSanitizer build: every test;
#   4. libFuzzer targets, 20 seconds each (scripts/fuzz.sh);
#   5. normal build: a 20-second soak per backend (scripts/soak.sh 20), then
#      every test; its CTest summary is the last thing printed.
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

echo "== ThreadSanitizer: concurrency tests"
build build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNORI_SANITIZE=thread
(cd build-tsan && ctest -L concurrency -j "$jobs" --no-label-summary)

echo "== AddressSanitizer + UndefinedBehaviorSanitizer: all tests"
build build-asan -DCMAKE_BUILD_TYPE=Debug -DNORI_SANITIZE=address,undefined
(cd build-asan && ctest -j "$jobs" --no-label-summary)

echo "== libFuzzer targets, briefly"
bash scripts/fuzz.sh -max_total_time=20

echo "== Normal build: all tests"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== Soak: nori-demo under wrk, 20 s per backend"
bash scripts/soak.sh 20
cd build && exec ctest -j "$jobs"
