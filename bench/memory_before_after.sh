#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The memory backend of this tree next to an earlier revision, same run:
# set-heavy eviction (100k keys into max_keys 10000), each binary run once
# per round, alternating, best of ROUNDS.
# Usage: bench/memory_before_after.sh BUILD_DIR [ROUNDS] [REV]
#   REV default 7f8384f (main before the lock-free read path and the byte
#   bound). The old revision is built from `git archive` in a temporary
#   directory, removed at the end.
set -euo pipefail
build=${1:-build-bench}
rounds=${2:-5}
rev=${3:-7f8384f}
root=$(cd "$(dirname "$0")/.." && pwd)
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git -C "$root" archive "$rev" | tar -x -C "$old"
cmake -S "$old" -B "$old/build" -DCMAKE_BUILD_TYPE=Release -DNORI_BUILD_BENCH=ON >/dev/null
cmake --build "$old/build" -j2 --target bench_memory >/dev/null
best() { sort -g | tail -1; }
rate() { awk '{for (i = 1; i <= NF; i++) if ($i == "ops/s") { print $(i - 1); exit }}'; }
: >"$old/new.evict"; : >"$old/old.evict"
for ((r = 0; r < rounds; r++)); do
  "$build/bench/bench_memory" 1 evict | grep '^evict' | rate >>"$old/new.evict"
  "$old/build/bench/bench_memory" 1 evict | grep '^evict' | rate >>"$old/old.evict"
done
n=$(best <"$old/new.evict"); o=$(best <"$old/old.evict")
awk -v n="$n" -v o="$o" -v rev="$rev" 'BEGIN {
  printf "evict set-heavy: this tree %.0f ops/s, %s %.0f ops/s, ratio %.2fx\n", n, rev, o, n / o }'
