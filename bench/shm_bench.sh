#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The shared-memory backend's targets in one run (docs/BENCHMARKS.md,
# "Shared-memory backend"): get vs the memory backend, set, 1 and 2
# processes, gets vs Redis over a unix socket (a private redis-server,
# stopped by pid), overhead per entry. Prints the load average first: the
# 2-process figures mean something only when both cores are free.
# Usage: bench/shm_bench.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
rounds=${2:-5}
cd "$here/.."
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNORI_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j2 --target bench_shm >/dev/null
dir=$(mktemp -d)
redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --dir "$dir" \
  --save "" --appendonly no --daemonize no --loglevel warning >"$dir/redis.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && break
  sleep 0.05
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/bench/bench_shm" "$rounds" get set procs redis overhead --redis "unix://$dir/redis.sock"
