#!/usr/bin/env bash
# The response cache under load by the HTTP rules, in one run:
#  1. handler runs per expiry: wrk -c CONNS on /dashboard/short (the
#     dashboard query cached 1 s, no stale window) against nori-demo with
#     coalescing (the default) and with --no-coalescing (Nori's Python
#     behaviour: every concurrent miss runs the handler), side by side;
#     runs per expiry = database queries / seconds of load.
#  2. 304 rate vs 200 HIT rate: wrk on /products?page=1 with a matching
#     If-None-Match, and without it.
# Usage: bench/http_rules_bench.sh BUILD_DIR [SECONDS] [CONNECTIONS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
secs=${2:-10}
conns=${3:-64}
source "$here/lib.sh"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

start_demo() { # name extra-args... -> sets port_<name>
  local name=$1 port
  shift
  port=$(free_port)
  CACHE_BACKEND=memory "$build/examples/demo/nori-demo" --port "$port" --db "$work/$name.db" \
    "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 400); do
    curl -sf "http://127.0.0.1:$port/hello" >/dev/null 2>&1 && break
    sleep 0.05
  done
  printf -v "port_$name" '%s' "$port"
}
queries() { # port -> nori_db_queries_total
  curl -s "http://127.0.0.1:$1/metrics" | awk '/^nori_db_queries_total /{print $2}'
}
# 16 worker threads each: with one thread per CPU (2 here) at most two
# requests can be inside a handler at once, which would cap the
# no-coalescing figure at 2 whatever the load.
start_demo coal --threads 16
start_demo none --threads 16 --no-coalescing

runs_per_expiry() { # port -> handler runs per 1-s expiry under wrk
  local q0 q1
  q0=$(queries "$1")
  wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:$1/dashboard/short" >/dev/null 2>&1
  q1=$(queries "$1")
  awk -v a="$q0" -v b="$q1" -v s="$secs" 'BEGIN { printf "%.1f", (b - a) / s }'
}
coal=$(runs_per_expiry "$port_coal")
none=$(runs_per_expiry "$port_none")

url="http://127.0.0.1:$port_coal/products?page=1"
curl -s -o /dev/null "$url"
etag=$(curl -si "$url" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
[[ -n "$etag" ]] || { echo "no ETag on $url" >&2; exit 1; }
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$url") == 304 ]] ||
  { echo "no 304 for a matching If-None-Match" >&2; exit 1; }
rps() { wrk -t2 -c"$conns" -d"${secs}s" "$@" 2>/dev/null | awk '/^Requests\/sec:/{print $2}'; }
hit=$(rps "$url")
nm=$(rps -H "If-None-Match: $etag" "$url")

printf "http rules, wrk -t2 -c%d -d%ds, memory backend\n" "$conns" "$secs"
printf "handler runs per expiry, /dashboard/short (ttl 1 s): coalescing %s, none (Nori-style) %s\n" \
  "$coal" "$none"
awk -v h="$hit" -v n="$nm" 'BEGIN {
  printf "/products?page=1: 200 HIT %.0f req/s, 304 Not Modified %.0f req/s (%.2fx)\n", h, n, n / h }'
