#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Redis backend from 1, 8 and 32 threads next to redis-benchmark with as
# many connections, on the same private redis-server, alternating the two
# clients; the best of ROUNDS runs of each is kept.
# Usage: bench/redis_vs_benchmark.sh BUILD_DIR [ROUNDS] [OPS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
rounds=${2:-3}
ops=${3:-200000}
source "$here/lib.sh"

start_redis R
trap 'stop_redis "$R_PID" "$R_DIR"' EXIT
url="redis://127.0.0.1:$R_PORT"

best() { sort -g | tail -1; }
for n in 1 8 32; do
  rb_set=() rb_get=() nori_set=() nori_get=()
  for _ in $(seq 1 "$rounds"); do
    out=$(redis-benchmark -q -n "$ops" -c "$n" -t set,get -p "$R_PORT" -d 3 -r 10000 2>/dev/null | tr '\r' '\n')
    rb_set+=("$(awk '/^SET:/{print $2}' <<<"$out" | tail -1)")
    rb_get+=("$(awk '/^GET:/{print $2}' <<<"$out" | tail -1)")
    out=$("$build/bench/redis_quick" "$url" "$n" "$ops")
    nori_set+=("$(awk '/^nori SET:/{print $3}' <<<"$out")")
    nori_get+=("$(awk '/^nori GET:/{print $3}' <<<"$out")")
  done
  rs=$(printf '%s\n' "${rb_set[@]}" | best) rg=$(printf '%s\n' "${rb_get[@]}" | best)
  ns=$(printf '%s\n' "${nori_set[@]}" | best) ng=$(printf '%s\n' "${nori_get[@]}" | best)
  awk -v n="$n" -v rs="$rs" -v rg="$rg" -v ns="$ns" -v ng="$ng" 'BEGIN {
    printf "redis %2d threads  SET nori %9.0f  redis-benchmark %9.0f  ratio %.2fx\n", n, ns, rs, ns / rs
    printf "redis %2d threads  GET nori %9.0f  redis-benchmark %9.0f  ratio %.2fx\n", n, ng, rg, ng / rg }'
done
