#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Memory per entry for 1M entries (16-byte keys, 64-byte values), beyond the
# 80 raw bytes: the memory backend (resident memory of bench_memory) next to
# a private redis-server holding the same keys and values (INFO memory).
# Usage: bench/memory_vs_redis.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
source "$here/lib.sh"

"$build/bench/bench_memory" 1 memory | tail -1

start_redis R
trap 'stop_redis "$R_PID" "$R_DIR"' EXIT
before=$(redis-cli -p "$R_PORT" info memory | tr -d '\r' | awk -F: '/^used_memory:/{print $2}')
before_rss=$(redis-cli -p "$R_PORT" info memory | tr -d '\r' | awk -F: '/^used_memory_rss:/{print $2}')
val=$(printf 'v%.0s' $(seq 1 64))
# RESP SET commands for the same 1M keys, piped in one stream.
awk -v val="$val" 'BEGIN { for (i = 0; i < 1000000; i++) { k = sprintf("mem:%012d", i);
  printf "*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$64\r\n%s\r\n", k, val } }' |
  redis-cli -p "$R_PORT" --pipe >/dev/null
keys=$(redis-cli -p "$R_PORT" dbsize)
after=$(redis-cli -p "$R_PORT" info memory | tr -d '\r' | awk -F: '/^used_memory:/{print $2}')
after_rss=$(redis-cli -p "$R_PORT" info memory | tr -d '\r' | awk -F: '/^used_memory_rss:/{print $2}')
awk -v n="$keys" -v a="$after" -v b="$before" -v ar="$after_rss" -v br="$before_rss" 'BEGIN {
  printf "redis-server %s keys: used_memory %.1f bytes per entry (%.1f beyond the 80 raw bytes), resident %.1f (%.1f beyond)\n",
    n, (a - b) / n, (a - b) / n - 80, (ar - br) / n, (ar - br) / n - 80 }'
