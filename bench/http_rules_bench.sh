#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The response cache under load by the HTTP rules, in one run:
#  1. handler runs per expiry: wrk -c CONNS on /dashboard/short (the
#     dashboard query cached 1 s, no stale window) against nori-demo with
#     coalescing (the default) and with --no-coalescing (Nori's Python
#     behaviour: every concurrent miss runs the handler), side by side;
#     runs per expiry = database queries / seconds of load.
#  2. 304 rate vs 200 HIT rate on /products?page=1, with a matching
#     If-None-Match and without it, both by bench/http_load (wrk cannot:
#     its parser waits for a body after a 304 that carries the 200's
#     Content-Length, RFC 9110 8.6, and reports 0 requests/s), alternating
#     ROUNDS rounds of SECONDS each, best of the rounds for each; then one
#     wrk run on the 200 HIT beside http_load's as a cross-check of the
#     client (the two should be within ~20%).
# Needs a build configured with -DNORI_BUILD_BENCH=ON (for http_load).
# Usage: bench/http_rules_bench.sh BUILD_DIR [SECONDS] [CONNECTIONS] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
secs=${2:-10}
conns=${3:-64}
rounds=${4:-3}
load="$build/bench/http_load"
[[ -x "$load" ]] || { echo "no $load: configure $build with -DNORI_BUILD_BENCH=ON" >&2; exit 1; }
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
queries() { # port -> nori_db_queries_total; fails rather than print nothing
  local q
  q=$(curl -s --max-time 10 "http://127.0.0.1:$1/metrics" | awk '/^nori_db_queries_total /{print $2}')
  [[ $q =~ ^[0-9]+$ ]] || { echo "no nori_db_queries_total from :$1/metrics (got '$q')" >&2; return 1; }
  echo "$q"
}
# 16 worker threads each: with one thread per CPU (2 here) at most two
# requests can be inside a handler at once, which would cap the
# no-coalescing figure at 2 whatever the load.
start_demo coal --threads 16
start_demo none --threads 16 --no-coalescing

runs_per_expiry() { # port -> handler runs per 1-s expiry under wrk
  local q0 q1
  q0=$(queries "$1") || return 1
  wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:$1/dashboard/short" >"$work/wrk.$1.log" 2>&1
  q1=$(queries "$1") || return 1
  # An entry of 1 s under load is refilled at least once a second: no
  # query at all means the load never reached the handler.
  [[ $q1 -gt $q0 ]] || { echo "no handler run on :$1 under wrk:" >&2; cat "$work/wrk.$1.log" >&2; return 1; }
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
# http_load ARGS... -> requests/s; fails unless every response had status
# $want (a 304 round that got 200s would measure the wrong thing).
load_rps() {
  local want=$1 out
  shift
  out=$("$load" 127.0.0.1 "$port_coal" "/products?page=1" "$secs" "$conns" 2 "$@") || {
    echo "http_load failed" >&2; return 1; }
  if [[ $(grep -c '^  status ' <<<"$out") != 1 ]] || ! grep -q "^  status $want: " <<<"$out"; then
    printf 'http_load: expected only status %s:\n%s\n' "$want" "$out" >&2
    return 1
  fi
  awk '/^Requests\/sec:/{print $2}' <<<"$out"
}
best_hit=0 best_nm=0 hits=() nms=()
for _ in $(seq 1 "$rounds"); do # alternating, so drift in the load hits both
  h=$(load_rps 200)
  n=$(load_rps 304 "If-None-Match: $etag")
  hits+=("$h") nms+=("$n")
  best_hit=$(awk -v a="$best_hit" -v b="$h" 'BEGIN { print (b > a ? b : a) }')
  best_nm=$(awk -v a="$best_nm" -v b="$n" 'BEGIN { print (b > a ? b : a) }')
done
wrk_hit=$(wrk -t2 -c"$conns" -d"${secs}s" "$url" 2>/dev/null | awk '/^Requests\/sec:/{print $2}')
load_hit=$(load_rps 200)

printf "http rules, -c%d, %ds per run, memory backend, load average %s\n" "$conns" "$secs" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
printf "handler runs per expiry, /dashboard/short (ttl 1 s, wrk -t2): coalescing %s, none (Nori-style) %s\n" \
  "$coal" "$none"
printf "/products?page=1, http_load 2 threads, %d alternating rounds: 200 HIT %s, 304 %s req/s\n" \
  "$rounds" "${hits[*]}" "${nms[*]}"
awk -v h="$best_hit" -v n="$best_nm" 'BEGIN {
  printf "/products?page=1, best of the rounds: 200 HIT %.0f req/s, 304 Not Modified %.0f req/s (%.2fx)\n", h, n, n / h }'
awk -v w="$wrk_hit" -v l="$load_hit" 'BEGIN {
  printf "cross-check, 200 HIT back to back: wrk -t2 %.0f req/s, http_load %.0f req/s (http_load/wrk %.2fx)\n", w, l, l / w }'
