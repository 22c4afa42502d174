#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The memory backend's single-threaded get next to a bare open-addressing
# table, this tree and an earlier revision side by side, each through the
# static library (bench_memory) and through libnoricache.so
# (bench_memory_shared), in one run:
#  1. wall clock: `bench_memory 1 getpair` of the four binaries in turn,
#     ROUNDS times. Each run alternates the bare table and nori in slices of
#     500,000 lookups and reports the median ratio of neighbouring slices
#     (steadier on a loaded machine than whole runs); printed: the median of
#     the ROUNDS medians, and their range;
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
ratio() { awk -v what="$1" 'index($0, what) { sub(/x$/, "", $NF); print $NF }'; }
for ((r = 0; r < rounds; r++)); do
  for v in "${order[@]}"; do
    "${bin[$v]}" 1 getpair >"$old/out"
    ratio "get_into / bare" <"$old/out" >>"$old/$v.into"
    ratio "get / bare" <"$old/out" >>"$old/$v.get"
  done
done
stat() { sort -g "$1" | awk '{ v[NR] = $1 } END {
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.2fx (%.2f-%.2f)", m, v[1], v[NR] }'; }
echo "wall clock: getpair medians of $rounds rounds, ratio to the bare table"
echo "  (new: this tree; old: $rev)"
for v in "${order[@]}"; do
  printf "  %-10s get_into %s   get %s\n" "$v" "$(stat "$old/$v.into")" "$(stat "$old/$v.get")"
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
