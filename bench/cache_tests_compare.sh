#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The HTTP caching test suite (npm http-cache-tests 0.4.5) through several
# caches on this machine, scored the same way (tests/cache-tests/score.mjs),
# beside the results published inside the npm package: the table of
# docs/HTTP.md. Not run by CI (it needs varnish and nginx-light:
# `scripts/setup.sh --compare`).
#
#   bench/cache_tests_compare.sh [--out DIR] [--proxy EXE]
#
# Rows: nori-proxy on memory, Redis, Redis + near cache (scripts/cache-tests.sh);
# Varnish (varnishd -a ... -b ORIGIN, default VCL; and with -p default_ttl=0);
# nginx (proxy_cache with a keys_zone in a temporary directory, no
# proxy_cache_valid); then the package's results/*.json (versions from its
# results/index.mjs). Writes DIR/table.md and DIR/<row>/{results.json,report.tsv}.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/cache-tests/lib.sh
source "$root/tests/cache-tests/lib.sh"

out="$root/build/cache-tests-compare"
proxy="$root/build/examples/proxy/nori-proxy"
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --proxy) proxy=$2; shift 2 ;;
    *) ct_die "usage: bench/cache_tests_compare.sh [--out DIR] [--proxy EXE]" ;;
  esac
done
ct_install
mkdir -p "$out"
out=$(cd "$out" && pwd)
trap ct_stop_all EXIT
trap 'ct_stop_all; exit 1' TERM INT HUP
summaries=()

# run_through NAME LABEL START-FUNCTION: a fresh origin, the cache the
# function starts in front of it (it sets CACHE_PORT and CACHE_PID), the
# suite, the score.
run_through() {
  local name=$1 label=$2 start=$3 dir="$out/$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  ct_start_origin "$dir"
  local origin_pid=$CT_PID
  if ! "$start" "$dir"; then
    echo "cache_tests_compare: $name did not start (see $dir)" >&2
    ct_stop "$origin_pid"
    return 1
  fi
  local t0=$SECONDS
  if ct_run_suite "http://127.0.0.1:$CACHE_PORT" "$dir/results.json" 900; then
    summaries+=("$(ct_score --label "$label" --report "$dir/report.tsv" \
      --breakdown "$dir/breakdown.md" "$dir/results.json") [$((SECONDS - t0)) s]")
    echo "${summaries[-1]}"
  fi
  ct_stop "$CACHE_PID"
  ct_stop "$origin_pid"
}

start_varnish() { # DIR [varnishd args...]
  local dir=$1
  shift
  CACHE_PORT=$(ct_free_port)
  # The work directory is read by varnishd's unprivileged child.
  chmod 755 "$dir"
  ct_start "$dir/varnish.log" varnishd -F -a "127.0.0.1:$CACHE_PORT" -b "127.0.0.1:$CT_ORIGIN_PORT" \
    -n "$dir/work" -s malloc,256m "$@"
  CACHE_PID=$CT_PID
  ct_wait_port "$CACHE_PORT" 60 "$CACHE_PID"
}
start_varnish_default() { start_varnish "$1"; }
start_varnish_ttl0() { start_varnish "$1" -p default_ttl=0; }

start_nginx() { # DIR
  local dir=$1
  CACHE_PORT=$(ct_free_port)
  mkdir -p "$dir/cache" "$dir/tmp"
  local user=""
  [[ $(id -u) -eq 0 ]] && user="user root;"
  cat >"$dir/nginx.conf" <<EOF
$user
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  proxy_cache_path $dir/cache keys_zone=suite:10m;
  server {
    listen 127.0.0.1:$CACHE_PORT;
    location / {
      proxy_pass http://127.0.0.1:$CT_ORIGIN_PORT;
      proxy_cache suite;
    }
  }
}
EOF
  ct_start "$dir/nginx.log" nginx -p "$dir" -c "$dir/nginx.conf"
  CACHE_PID=$CT_PID
  ct_wait_port "$CACHE_PORT" 30 "$CACHE_PID"
}

for backend in memory redis near; do
  bash "$root/scripts/cache-tests.sh" --backend "$backend" --proxy "$proxy" --out "$out/nori-$backend" \
    >"$out/nori-$backend.txt" 2>&1
  summaries+=("$(head -1 "$out/nori-$backend.txt")")
  echo "${summaries[-1]}"
done
if command -v varnishd >/dev/null; then
  v=$(varnishd -V 2>&1 | sed -n 's/.*varnish-\([0-9.]*\).*/\1/p' | head -1)
  run_through varnish "Varnish $v (run here, default VCL)" start_varnish_default
  run_through varnish-ttl0 "Varnish $v (run here, default_ttl=0)" start_varnish_ttl0
else
  echo "cache_tests_compare: varnishd missing (scripts/setup.sh --compare): no Varnish row" >&2
fi
if command -v nginx >/dev/null; then
  v=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
  run_through nginx "nginx $v (run here, proxy_cache)" start_nginx
else
  echo "cache_tests_compare: nginx missing (scripts/setup.sh --compare): no nginx row" >&2
fi
mapfile -t published < <(ct_score --published)

{
  echo "| cache | required passed (of 144) | optimal passed (of 66) | all: required (of 165) | all: optimal (of 95) |"
  echo "|---|---|---|---|---|"
  for line in "${summaries[@]}" "${published[@]}"; do
    # "LABEL: required a/b optimal c/d (all: required e/f optimal g/h)"
    sed -E 's/^(.*): required ([0-9]+)\/[0-9]+ optimal ([0-9]+)\/[0-9]+ \(all: required ([0-9]+)\/[0-9]+ optimal ([0-9]+)\/[0-9]+\).*/| \1 | \2 | \3 | \4 | \5 |/' <<<"$line"
  done
} >"$out/table.md"
echo
cat "$out/table.md"
