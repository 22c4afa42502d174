#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Single-thread memory `get` of this tree next to an earlier revision, same
# run (bench_memory's "get" section: 18-byte keys, 64-byte values, a bare
# open-addressing table as the yardstick). Each binary runs one round per
# round here, alternating, and the best of ROUNDS is kept for each figure.
# Usage: bench/get_before_after.sh BUILD_DIR [ROUNDS] [REV]
#   BUILD_DIR  a -DNORI_BUILD_BENCH=ON -DCMAKE_BUILD_TYPE=Release build of this tree
#   REV        default cb6e5dc (main before the SipHash key hash). Built from
#              `git archive` in a temporary directory, removed at the end.
set -euo pipefail
build=${1:-build-bench}
rounds=${2:-7}
rev=${3:-cb6e5dc}
root=$(cd "$(dirname "$0")/.." && pwd)
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git -C "$root" archive "$rev" | tar -x -C "$old"
cmake -S "$old" -B "$old/build" -DCMAKE_BUILD_TYPE=Release -DNORI_BUILD_BENCH=ON >/dev/null
cmake --build "$old/build" -j2 --target bench_memory >/dev/null
# "get  nori get_into (caller buf)   7541144 ops/s ..." -> "into 7541144"
pick() { awk '/^get  bare/ {print "bare", $5} /^get  nori get_into/ {print "into", $6}
              /^get  nori get \(malloc/ {print "get", $6}'; }
for ((r = 0; r < rounds; r++)); do
  "$build/bench/bench_memory" 1 get | pick | sed 's/^/new /' >>"$old/runs"
  "$old/build/bench/bench_memory" 1 get | pick | sed 's/^/old /' >>"$old/runs"
done
awk -v rev="$rev" -v rounds="$rounds" '
  { if ($3 > best[$1 " " $2]) best[$1 " " $2] = $3 }
  END {
    printf "memory get, 1 thread, best of %d alternating rounds (ops/s):\n", rounds
    printf "  %-28s %12s %12s %8s\n", "", "this tree", rev, "ratio"
    split("bare into get", w, " ")
    name["bare"] = "bare table"; name["into"] = "get_into (caller buffer)"
    name["get"] = "get (malloc'\''d copy)"
    for (i = 1; i <= 3; i++)
      printf "  %-28s %12.0f %12.0f %7.2fx\n", name[w[i]], best["new " w[i]],
             best["old " w[i]], best["new " w[i]] / best["old " w[i]]
    printf "  get_into / bare: this tree %.2fx, %s %.2fx\n", best["new into"] / best["new bare"],
           rev, best["old into"] / best["old bare"]
    printf "  get / bare:      this tree %.2fx, %s %.2fx\n", best["new get"] / best["new bare"],
           rev, best["old get"] / best["old bare"]
  }' "$old/runs"
