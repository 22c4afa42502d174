#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# HTTP throughput with wrk, in one run: nori-demo's /hello (the server's own
# ceiling), /dashboard from nori's cache, /dashboard/uncached, and Varnish in
# front of nori-demo serving /dashboard from its own cache. The contenders
# alternate, ROUNDS times; the best of each is kept.
# Usage: bench/http_bench.sh BUILD_DIR [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
rounds=${2:-3}
secs=${3:-10}
conns=${4:-64}
source "$here/lib.sh"
cmake -S "$here/.." -B "$build" -DCMAKE_BUILD_TYPE=Release -DNORI_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j2 --target nori-demo >/dev/null

work=$(mktemp -d)
demo_pid="" varnish_pid=""
cleanup() {
  [[ -n "$varnish_pid" ]] && kill "$varnish_pid" 2>/dev/null && wait "$varnish_pid" 2>/dev/null
  [[ -n "$demo_pid" ]] && kill "$demo_pid" 2>/dev/null && wait "$demo_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

demo_port=$(free_port)
CACHE_BACKEND=memory "$build/examples/demo/nori-demo" --port "$demo_port" --db "$work/demo.db" \
  >"$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$demo_port/hello" >/dev/null 2>&1 && break
  sleep 0.05
done

# Varnish on loopback with the demo as its backend: /dashboard cached for
# 60 s (as nori caches it), everything else passed through.
varnish_port=$(free_port)
cat >"$work/demo.vcl" <<VCL
vcl 4.1;
backend demo { .host = "127.0.0.1"; .port = "$demo_port"; }
sub vcl_recv { if (req.url != "/dashboard") { return (pass); } }
sub vcl_backend_response { set beresp.ttl = 60s; }
VCL
chmod -R a+rX "$work"
varnishd -F -a "127.0.0.1:$varnish_port" -f "$work/demo.vcl" -n "$work/varnish" \
  -s malloc,64m >"$work/varnish.log" 2>&1 &
varnish_pid=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$varnish_port/dashboard" >/dev/null 2>&1 && break
  sleep 0.05
done
# Both caches warm; check that each really serves from its cache.
curl -si "http://127.0.0.1:$demo_port/dashboard" | grep -q 'X-Cache: HIT' ||
  { echo "nori-demo did not answer /dashboard from its cache:" >&2; cat "$work/demo.log" >&2; exit 1; }
hits=$(curl -si "http://127.0.0.1:$varnish_port/dashboard" | tr -d '\r' | awk -F': ' 'tolower($1)=="age"{print $2}')
[[ -n "$hits" ]] || { echo "varnish did not answer from its cache" >&2; exit 1; }

rps() { # url -> requests/s (wrk -t2)
  wrk -t2 -c"$conns" -d"${secs}s" "$1" 2>/dev/null | awk '/^Requests\/sec:/{print $2}'
}
declare -A best=()
names=(hello dashboard uncached varnish)
urls=("http://127.0.0.1:$demo_port/hello" "http://127.0.0.1:$demo_port/dashboard"
      "http://127.0.0.1:$demo_port/dashboard/uncached" "http://127.0.0.1:$varnish_port/dashboard")
for _ in $(seq 1 "$rounds"); do
  for i in "${!names[@]}"; do
    r=$(rps "${urls[$i]}")
    b=${best[${names[$i]}]:-0}
    best[${names[$i]}]=$(awk -v a="$r" -v b="$b" 'BEGIN { print (a > b) ? a : b }')
  done
done
awk -v h="${best[hello]}" -v d="${best[dashboard]}" -v u="${best[uncached]}" -v v="${best[varnish]}" \
    -v c="$conns" -v s="$secs" 'BEGIN {
  printf "http wrk -t2 -c%d -d%ds, best of rounds (requests/s)\n", c, s
  printf "http /hello                 %10.0f\n", h
  printf "http /dashboard (nori)      %10.0f  %.2fx /hello, %.2fx varnish, %.0fx uncached\n", d, d / h, d / v, d / u
  printf "http /dashboard (varnish)   %10.0f\n", v
  printf "http /dashboard/uncached    %10.0f\n", u }'
