#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the HTTP caching test suite (npm http-cache-tests 0.4.5, the suite of
# cache-tests.fyi) against nori-proxy and scores it with the suite's own
# rules (tests/cache-tests/score.mjs). CTest runs it as test_cache_suite_memory
# and test_cache_suite_redis (tests/cache-tests/CMakeLists.txt).
#
#   scripts/cache-tests.sh [--backend memory|redis|near] [--proxy EXE]
#                          [--out DIR] [--min-required N] [--min-optimal N]
#                          [--id TEST-ID] [--install-only] [-- PROXY-ARGS...]
#
#   --backend   the proxy's cache: memory (default), redis (a private
#               redis-server this script starts), near (the same Redis with
#               the near cache on)
#   --proxy     the nori-proxy binary (default build/examples/proxy/nori-proxy)
#   --out DIR   where results.json, report.tsv, breakdown.md and the logs go
#               (default build/cache-tests/BACKEND)
#   --min-required N, --min-optimal N
#               fail (exit 1) below these scores (default: the environment's
#               NORI_CACHE_SUITE_MIN_REQUIRED / _MIN_OPTIMAL, else 0)
#   --id ID     run one test only, with the suite's request/response dump
#               (for working on one failure); no scoring
#   --install-only  install the suite (into the cache directory) and stop
#   -- ARGS     passed to nori-proxy (e.g. -- --ttl 0)
#
# Output: a summary line ("nori-proxy memory: required P/144 optimal P/66
# (all: ...)"), the counted required tests that did not pass with the
# suite's message, and DIR/report.tsv with one line per test:
# RESULT ID KIND SCOPE SUITE MESSAGE (tab-separated; see score.mjs).
# Everything started here (origin, proxy, redis-server) is stopped by pid.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/cache-tests/lib.sh
source "$root/tests/cache-tests/lib.sh"

backend=memory
proxy="$root/build/examples/proxy/nori-proxy"
out=""
min_required=${NORI_CACHE_SUITE_MIN_REQUIRED:-0}
min_optimal=${NORI_CACHE_SUITE_MIN_OPTIMAL:-0}
one_id=""
install_only=0
proxy_args=()
while (($#)); do
  case $1 in
    --backend) backend=$2; shift 2 ;;
    --proxy) proxy=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --min-required) min_required=$2; shift 2 ;;
    --min-optimal) min_optimal=$2; shift 2 ;;
    --id) one_id=$2; shift 2 ;;
    --install-only) install_only=1; shift ;;
    --) shift; proxy_args=("$@"); break ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) ct_die "unknown argument $1 (see --help)" ;;
  esac
done
case $backend in memory | redis | near) ;; *) ct_die "--backend memory|redis|near" ;; esac

ct_install
((install_only)) && { echo "cache-tests: suite installed at $CT_SUITE"; exit 0; }
[[ -x "$proxy" ]] || ct_die "no nori-proxy at $proxy (build it, or pass --proxy)"
out=${out:-$root/build/cache-tests/$backend}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.log "$out/results.json" "$out/report.tsv" "$out/breakdown.md"
trap ct_stop_all EXIT
# CTest's timeout and ^C: stop what was started before going.
trap 'ct_stop_all; exit 1' TERM INT HUP
start=$(date +%s)

proxy_env=(CACHE_BACKEND=memory)
if [[ $backend != memory ]]; then
  command -v redis-server >/dev/null || ct_die "redis-server is missing: run scripts/setup.sh"
  redis_port=$(ct_free_port)
  mkdir -p "$out/redis"
  ct_start "$out/redis.log" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$out/redis" --daemonize no
  ct_wait_port "$redis_port" 30 "$CT_PID" || { cat "$out/redis.log" >&2; ct_die "redis-server did not start"; }
  proxy_env=(CACHE_BACKEND=redis REDIS_URL="redis://127.0.0.1:$redis_port")
  [[ $backend == near ]] && proxy_env+=(CACHE_NEAR_MAX_KEYS=10000)
fi

ct_start_origin "$out"
origin_pid=$CT_PID
proxy_pid=""
for try in 1 2 3; do
  proxy_port=$(ct_free_port)
  ct_start "$out/proxy.log" env "${proxy_env[@]}" "$proxy" --listen "$proxy_port" \
    --origin "http://127.0.0.1:$CT_ORIGIN_PORT" --prefix "suite$$" "${proxy_args[@]}"
  if ct_wait_port "$proxy_port" 30 "$CT_PID"; then proxy_pid=$CT_PID; break; fi
  ct_stop "$CT_PID"
done
[[ -n $proxy_pid ]] || { cat "$out/proxy.log" >&2; ct_die "nori-proxy did not start"; }
base="http://127.0.0.1:$proxy_port"

if [[ -n $one_id ]]; then
  (cd "$CT_SUITE" && npm_config_base="$base" npm_config_id="$one_id" timeout -k 5 120 \
    node --no-warnings cli.mjs)
  exit $?
fi

label="nori-proxy $backend"
ct_run_suite "$base" "$out/results.json" 600 || {
  echo "---- proxy log"; tail -30 "$out/proxy.log"; exit 1;
}
suite_secs=$(($(date +%s) - start))
# Stop the proxy before scoring: a sanitizer build reports leaks and errors
# at exit, and a proxy that does not stop cleanly fails the run.
ct_stop "$proxy_pid"
proxy_rc=$?
ct_score --label "$label" --report "$out/report.tsv" --breakdown "$out/breakdown.md" \
  --min-required "$min_required" --min-optimal "$min_optimal" "$out/results.json" \
  >"$out/summary.txt"
score_rc=$?
cat "$out/summary.txt"
echo "counted required tests not passed (RESULT ID SUITE MESSAGE; every test in $out/report.tsv):"
awk -F'\t' '$3 == "required" && $4 == "counted" && $1 != "pass" {print "  " $1 "\t" $2 "\t" $5 "\t" $6}' \
  "$out/report.tsv"
echo "counted tests by result: $(awk -F'\t' '$4 == "counted" {print $3 "=" $1}' "$out/report.tsv" |
  sort | uniq -c | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}')"
echo "suite ran in ${suite_secs} s (thresholds: required >= $min_required, optimal >= $min_optimal)"
grep -h '^nori-proxy: hits' "$out/proxy.log" || true
if ((proxy_rc != 0)); then
  echo "FAIL: nori-proxy exited with status $proxy_rc (log: $out/proxy.log)"
  tail -40 "$out/proxy.log"
  exit 1
fi
exit $score_rc
