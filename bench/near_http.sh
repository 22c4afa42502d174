#!/usr/bin/env bash
# nori-demo's cached GET /dashboard on the memory backend against the same on
# Redis with the near cache (CACHE_NEAR_MAX_KEYS=10000) and on plain Redis,
# with wrk, in one run: the three alternate ROUNDS times, the best of each is
# kept. Usage: bench/near_http.sh BUILD_DIR [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
rounds=${2:-3}
secs=${3:-5}
conns=${4:-64}
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

start_demo() { # name env...
  local name=$1 port
  shift
  port=$(free_port)
  env "$@" "$build/examples/demo/nori-demo" --port "$port" --db "$work/$name.db" \
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
start_demo memory CACHE_BACKEND=memory
start_demo near CACHE_BACKEND=redis REDIS_URL="redis://127.0.0.1:$R_PORT" CACHE_NEAR_MAX_KEYS=10000
start_demo redis CACHE_BACKEND=redis REDIS_URL="redis://127.0.0.1:$R_PORT/1"

declare -A best=([memory]=0 [near]=0 [redis]=0)
for _ in $(seq 1 "$rounds"); do
  for name in memory near redis; do
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
