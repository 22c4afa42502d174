#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# nori-demo's cached GET /dashboard on the memory backend against the same on
# Redis with the near cache (CACHE_NEAR_MAX_KEYS=10000) and on plain Redis,
# with wrk, in one run: the three alternate ROUNDS times, the best of each is
# kept. Usage: bench/near_http.sh BUILD_DIR [ROUNDS] [SECONDS] [CONNECTIONS] [BEFORE_DIR]
# BEFORE_DIR: another build (e.g. of an earlier commit) whose nori-demo also
# runs, on Redis with and without the near cache, in the same rounds, so that
# a change is measured before and after side by side.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
rounds=${2:-3}
secs=${3:-5}
conns=${4:-64}
before=${5:-}
source "$here/lib.sh"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [[ -n "${R_PID:-}" ]] && stop_redis "$R_PID" "$R_DIR"
  rm -rf "$work"
}
trap cleanup EXIT
start_redis R

start_demo() { # name build env...
  local name=$1 dir=$2 port
  shift 2
  port=$(free_port)
  env "$@" "$dir/examples/demo/nori-demo" --port "$port" --db "$work/$name.db" \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$port/hello" >/dev/null 2>&1 && break
    sleep 0.05
  done
  # Fill the cache (and, with the near cache, the local copy).
  for _ in 1 2 3 4 5; do curl -sf "http://127.0.0.1:$port/dashboard" >/dev/null; sleep 0.1; done
  printf -v "PORT_$name" '%s' "$port"
}
start_demo memory "$build" CACHE_BACKEND=memory
start_demo near "$build" CACHE_BACKEND=redis REDIS_URL="redis://127.0.0.1:$R_PORT" CACHE_NEAR_MAX_KEYS=10000
start_demo redis "$build" CACHE_BACKEND=redis REDIS_URL="redis://127.0.0.1:$R_PORT/1"
names=(memory near redis)
if [[ -n "$before" ]]; then
  start_demo near_before "$before" CACHE_BACKEND=redis REDIS_URL="redis://127.0.0.1:$R_PORT/2" \
    CACHE_NEAR_MAX_KEYS=10000
  start_demo redis_before "$before" CACHE_BACKEND=redis REDIS_URL="redis://127.0.0.1:$R_PORT/3"
  names+=(near_before redis_before)
fi

declare -A best=([memory]=0 [near]=0 [redis]=0 [near_before]=0 [redis_before]=0)
for _ in $(seq 1 "$rounds"); do
  for name in "${names[@]}"; do
    port_var="PORT_$name"
    rps=$(wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:${!port_var}/dashboard" |
      awk '/Requests\/sec/ {print int($2)}')
    (( rps > best[$name] )) && best[$name]=$rps
  done
done
echo "GET /dashboard from cache, wrk -t2 -c$conns, best of $rounds x ${secs}s:"
echo "  memory backend:             ${best[memory]} requests/s"
echo "  Redis + near cache:         ${best[near]} requests/s ($(awk -v a="${best[near]}" -v b="${best[memory]}" 'BEGIN{printf "%.2f", a/b}')x memory)"
echo "  Redis, no near cache:       ${best[redis]} requests/s ($(awk -v a="${best[redis]}" -v b="${best[memory]}" 'BEGIN{printf "%.2f", a/b}')x memory)"
if [[ -n "$before" ]]; then
  echo "  $before, Redis + near cache: ${best[near_before]} requests/s ($(awk -v a="${best[near_before]}" -v b="${best[memory]}" 'BEGIN{printf "%.2f", a/b}')x memory)"
  echo "  $before, Redis, no near:     ${best[redis_before]} requests/s ($(awk -v a="${best[redis_before]}" -v b="${best[memory]}" 'BEGIN{printf "%.2f", a/b}')x memory)"
fi
