#!/usr/bin/env bash
# The memory backend's single-threaded get next to a bare open-addressing
# table, this tree and an earlier revision side by side, each through the
# static library (bench_memory) and through libnoricache.so
# (bench_memory_shared), in one run:
#  1. wall clock: `bench_memory 1 get` of the four binaries in turn, ROUNDS
#     times; the best of each figure is kept and the ratios are taken
#     between bests of the same binary (each binary measures the bare table
#     itself, in the same process);
#  2. instructions and simulated cache misses per call, exact whatever the
#     machine's load: callgrind over NORI_BENCH_GET_OPS lookups per
#     contender; the inclusive cost of run_bare, run_nori (get_into) and
#     run_nori_malloc (get) divided by that count. Cache simulation: L1d
#     48 KiB 12-way, last level 1 MiB 8-way (this machine's L1d and L2 per
#     core; the data, 1.4 MB, does not fit the L2), 64-byte lines.
# Usage: bench/memory_get.sh BUILD_DIR [ROUNDS] [REV]
#   BUILD_DIR is a -DNORI_BUILD_BENCH=ON -DCMAKE_BUILD_TYPE=Release build of
#   this tree. REV (default: where this branch left main) is built from `git archive` in a temporary
#   directory with this tree's bench/ (public API only), removed at the end.
set -euo pipefail
build=${1:-build-bench}
rounds=${2:-5}
rev=${3:-$(git -C "$(dirname "$0")" merge-base HEAD main)}
ops=${NORI_BENCH_GET_OPS:-200000}
root=$(cd "$(dirname "$0")/.." && pwd)
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git -C "$root" archive "$rev" | tar -x -C "$old"
rm -rf "$old/bench" && cp -r "$root/bench" "$old/bench"
cmake -S "$old" -B "$old/build" -DCMAKE_BUILD_TYPE=Release -DNORI_BUILD_BENCH=ON \
  -DNORI_BUILD_TESTS=OFF -DNORI_BUILD_EXAMPLES=OFF -DNORI_BUILD_TOOLS=OFF >/dev/null
cmake --build "$old/build" -j2 --target bench_memory bench_memory_shared >/dev/null
cmake --build "$build" -j2 --target bench_memory bench_memory_shared >/dev/null
declare -A bin=(
  [new-static]="$build/bench/bench_memory" [new-shared]="$build/bench/bench_memory_shared"
  [old-static]="$old/build/bench/bench_memory" [old-shared]="$old/build/bench/bench_memory_shared")
order=(new-static old-static new-shared old-shared)
rate() { awk -v what="$1" 'index($0, what) { for (i = 1; i <= NF; i++) if ($i == "ops/s") print $(i - 1) }'; }
for ((r = 0; r < rounds; r++)); do
  for v in "${order[@]}"; do
    "${bin[$v]}" 1 get >"$old/out"
    rate "bare open-addressing" <"$old/out" >>"$old/$v.bare"
    rate "get_into" <"$old/out" >>"$old/$v.into"
    rate "malloc'd copy" <"$old/out" >>"$old/$v.get"
  done
done
best() { sort -g "$1" | tail -1; }
echo "wall clock, best of $rounds rounds (this tree = new, $rev = old)"
for v in "${order[@]}"; do
  b=$(best "$old/$v.bare"); i=$(best "$old/$v.into"); g=$(best "$old/$v.get")
  awk -v v="$v" -v b="$b" -v i="$i" -v g="$g" 'BEGIN {
    printf "  %-10s bare %10.0f  get_into %10.0f (%.2fx)  get %10.0f (%.2fx) ops/s\n",
           v, b, i, i / b, g, g / b }'
done
echo "callgrind, per lookup with its loop ($ops lookups per contender; D1 48K, LL 1M)"
for v in "${order[@]}"; do
  NORI_BENCH_GET_OPS=$ops valgrind --tool=callgrind --cache-sim=yes --D1=49152,12,64 \
    --LL=1048576,8,64 --callgrind-out-file="$old/cg.$v" "${bin[$v]}" 1 get >/dev/null 2>&1
  callgrind_annotate --inclusive=yes --show=Ir,D1mr,DLmr "$old/cg.$v" 2>/dev/null |
    awk -v v="$v" -v n="$ops" '
      function num(s) { gsub(",", "", s); return s + 0 }
      /:run_bare |:run_nori |:run_nori_malloc / {
        name = $0; sub(/.*:/, "", name); sub(/ .*/, "", name)
        gsub(/\([^)]*\)/, "")
        ir = num($1); d1 = num($2); ll = num($3)
        printf "  %-10s %-16s %6.0f instructions  %5.2f L1d misses  %5.2f LL misses\n",
               v, name, ir / n, d1 / n, ll / n }'
done
