#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every benchmark in one go and prints the figures of docs/BENCHMARKS.md;
# draws docs/bench-threads.svg (throughput by thread count) with gnuplot.
# Not part of the test run. Takes about 15 minutes on 2 cores. The HTTP
# caching test suite's comparison with other caches is separate
# (bench/cache_tests_compare.sh, docs/HTTP.md).
#   bash scripts/bench.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bash scripts/setup.sh
for tool in wrk varnishd gnuplot; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ -n "${missing[*]:-}" ]]; then
  sudo=(); [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    wrk varnish gnuplot-nox
fi
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DNORI_BUILD_BENCH=ON -DNORI_BUILD_TESTS=OFF \
  >/dev/null
cmake --build build-bench -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "machine: $(nproc) CPUs, $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2}'), $(uname -r)"
./build-bench/bench/bench_memory "$rounds" get mixed evict threads | tee "$out/memory.txt"
bash bench/memory_vs_redis.sh build-bench
bash bench/redis_vs_benchmark.sh build-bench "$rounds" | tee "$out/redis.txt"
bash bench/redis_bulk.sh build-bench 5 100 100
bash bench/http_bench.sh build-bench "$rounds" 10
bash bench/shm_bench.sh build-bench "$rounds"
FCGI_BACKEND=shm bash bench/fcgi_bench.sh build-bench "$rounds" 10 64

# The chart: memory backend 90/10 by thread count, and the Redis backend next
# to redis-benchmark by connection count.
awk '/^threads/{print $2, $5}' "$out/memory.txt" >"$out/memory.dat"
awk '/GET nori/{print $2, $6, $8}' "$out/redis.txt" >"$out/redis.dat"
gnuplot <<GP
set terminal svg size 900,420 font "sans,11"
set output "docs/bench-threads.svg"
set multiplot layout 1,2
set title "memory backend, 90% get / 10% set"
set xlabel "threads (2 CPUs)"; set ylabel "million ops/s"; set logscale x 2; set yrange [0:*]
set key bottom right
plot "$out/memory.dat" using 1:(\$2/1e6) with linespoints lw 2 title "nori memory"
set title "Redis backend GET vs redis-benchmark"
set xlabel "client threads / connections"; set ylabel "thousand requests/s"
plot "$out/redis.dat" using 1:(\$2/1e3) with linespoints lw 2 title "nori redis", \
     "$out/redis.dat" using 1:(\$3/1e3) with linespoints lw 2 title "redis-benchmark"
unset multiplot
GP
echo "chart: docs/bench-threads.svg"
